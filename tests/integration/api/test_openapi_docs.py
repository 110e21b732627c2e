"""The interactive API docs work offline: Swagger UI comes from the package, not a CDN."""

from __future__ import annotations

import re


def test_docs_page_loads_swagger_ui_from_the_package(api):
    page = api.client.get("/docs", headers=api.headers("viewer"))
    assert page.status_code == 200
    assets = re.findall(r"""(?:src|href)=['"]([^'"]+)['"]""", page.text)
    assert "/static/vendor/swagger-ui/swagger-ui-bundle.js" in assets
    assert not [a for a in assets if a.startswith(("http:", "https:", "//"))]
    for asset in assets:
        assert api.client.get(asset).status_code == 200, asset


def test_openapi_spec_lists_the_api_and_describes_422_as_sent(api):
    spec = api.client.get("/openapi.json", headers=api.headers("viewer")).json()
    assert "/api/v1/portfolio" in spec["paths"]
    assert "/login" not in spec["paths"]  # pages are not API
    error = spec["components"]["schemas"]["HTTPValidationError"]
    assert error["properties"]["detail"]["type"] == "string"
    sent = api.client.post("/api/v1/backtests", json={"bogus": 1}, headers=api.headers()).json()
    assert set(error["required"]) <= set(sent)
    assert "bogus" in sent["detail"]
