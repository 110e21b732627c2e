// Log in: post the credentials as JSON; the server answers with an HttpOnly session cookie.
import { api, toast } from "../app.js";

const form = document.getElementById("login-form");
const error = document.getElementById("login-error");

function safeNext(target) {
  // Only a path on this site: resolve it as the browser would and compare origins.
  if (!target || !target.startsWith("/")) return "/overview";
  try {
    const url = new URL(target, window.location.origin);
    return url.origin === window.location.origin ? url.pathname + url.search + url.hash : "/overview";
  } catch {
    return "/overview";
  }
}

form.addEventListener("submit", async (event) => {
  event.preventDefault();
  const button = form.querySelector("button[type=submit]");
  const username = form.username.value.trim();
  const password = form.password.value;
  error.hidden = true;
  if (!username || !password) {
    error.textContent = "Enter your username and password.";
    error.hidden = false;
    return;
  }
  button.disabled = true;
  try {
    await api("/auth/login", { method: "POST", body: { username, password }, redirect401: false });
    location.assign(safeNext(form.dataset.next));
  } catch (failure) {
    error.textContent = failure.status === 401 ? "Wrong username or password." : failure.message;
    error.hidden = false;
    toast(error.textContent, "error");
    form.password.select();
  } finally {
    button.disabled = false;
  }
});
