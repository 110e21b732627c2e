// Charts on TradingView's Lightweight Charts (vendored, loaded by the pages that chart as the
// global `LightweightCharts`). The only module that calls the library: equity with drawdown,
// candlesticks with forecast bands, candlesticks with a run's trades, and two equity curves
// compared.

const COLORS = {
  text: "#8391a7",
  grid: "rgba(34, 44, 61, 0.55)",
  border: "#222c3d",
  accent: "#4d9bff",
  up: "#26b089",
  down: "#ef5b5b",
  warn: "#f0b43c",
  sma20: "#b48cff",
  sma50: "#54c7ec",
};
const DASHED = 2;

function lib() {
  const charts = window.LightweightCharts;
  if (!charts) throw new Error("The chart library did not load; reload the page.");
  return charts;
}

/** An ISO-8601 time as the library's UTC timestamp in seconds. */
export const toTime = (iso) => Math.floor(new Date(iso).getTime() / 1000);

/** Points sorted by time with one value per time (the last wins), as the library needs. */
export function series(points, valueOf, timeOf = (p) => toTime(p.time)) {
  const byTime = new Map();
  for (const point of points) {
    const time = timeOf(point);
    const value = valueOf(point);
    if (Number.isFinite(time) && value !== null && value !== undefined) byTime.set(time, { time, ...value });
  }
  return [...byTime.values()].sort((a, b) => a.time - b.time);
}

function create(container, extra = {}) {
  const chart = lib().createChart(container, {
    autoSize: true,
    layout: {
      background: { type: "solid", color: "transparent" },
      textColor: COLORS.text,
      fontSize: 11,
      fontFamily: getComputedStyle(document.body).fontFamily,
      panes: { separatorColor: COLORS.border, separatorHoverColor: "rgba(77, 155, 255, 0.2)" },
      // The logo sat over the drawdown pane's data; the attribution is a link in the page's
      // footer instead (base.html), as the library's licence allows.
      attributionLogo: false,
    },
    grid: { vertLines: { color: COLORS.grid }, horzLines: { color: COLORS.grid } },
    rightPriceScale: { borderColor: COLORS.border },
    // Years of daily bars must fit a phone's width when zoomed out.
    timeScale: { borderColor: COLORS.border, rightOffset: 4, minBarSpacing: 0.02 },
    crosshair: { mode: 0 },
    ...extra,
  });
  return chart;
}

// Show the time of day only when the bars are closer than a day apart.
function fitTime(chart, data) {
  if (data.length > 1) {
    const step = (data[data.length - 1].time - data[0].time) / (data.length - 1);
    chart.applyOptions({ timeScale: { timeVisible: step < 86400 } });
  }
  chart.timeScale().fitContent();
}

/** Equity (area) above its drawdown from the running peak (a second pane, in percent). */
export function equityChart(container) {
  const charts = lib();
  const chart = create(container);
  const equity = chart.addSeries(charts.AreaSeries, {
    lineColor: COLORS.accent, lineWidth: 2,
    topColor: "rgba(77, 155, 255, 0.28)", bottomColor: "rgba(77, 155, 255, 0.02)",
    priceLineVisible: false, title: "equity",
  });
  const drawdown = chart.addSeries(charts.BaselineSeries, {
    baseValue: { type: "price", price: 0 },
    topLineColor: COLORS.down, bottomLineColor: COLORS.down, lineWidth: 1,
    topFillColor1: "rgba(0, 0, 0, 0)", topFillColor2: "rgba(0, 0, 0, 0)",
    bottomFillColor1: "rgba(239, 91, 91, 0.08)", bottomFillColor2: "rgba(239, 91, 91, 0.4)",
    priceFormat: { type: "percent", precision: 1, minMove: 0.1 },
    // No last-value label: in a pane this short it hid the tick next to it, and the current
    // drawdown is in the page's stats.
    priceLineVisible: false, lastValueVisible: false,
  }, 1);
  // Tall enough for its zero line and a tick or two on a phone.
  chart.panes()[1]?.setStretchFactor(0.8);
  drawdown.priceScale().applyOptions({ scaleMargins: { top: 0.15, bottom: 0.2 } });
  let peak = -Infinity;
  let last = -Infinity;

  const ddOf = (p) => {
    peak = Math.max(peak, p.equity);
    const dd = Number.isFinite(p.drawdown) ? p.drawdown : peak > 0 ? p.equity / peak - 1 : 0;
    return dd * 100;
  };
  return {
    chart,
    container,
    /** Replace the data with points [{time, equity, drawdown?}]; returns how many. */
    setData(points) {
      peak = -Infinity;
      const sorted = [...points].sort((x, y) => toTime(x.time) - toTime(y.time));
      const clean = series(sorted, (p) => (Number.isFinite(p.equity) ? { value: p.equity, dd: ddOf(p) } : null));
      equity.setData(clean.map(({ time, value }) => ({ time, value })));
      drawdown.setData(clean.map(({ time, dd }) => ({ time, value: dd })));
      last = clean.length ? clean[clean.length - 1].time : -Infinity;
      fitTime(chart, clean);
      return clean.length;
    },
    /** Add one live point {time, equity, drawdown?}; older points than the last are ignored. */
    append(point) {
      const time = toTime(point.time);
      if (!Number.isFinite(point.equity) || !(time >= last)) return false;
      last = time;
      equity.update({ time, value: point.equity });
      drawdown.update({ time, value: ddOf(point) });
      return true;
    },
  };
}

/** A small legend in the chart's corner: [{label, color, dashed}] (the library draws none). */
function legend(container, items) {
  let box = container.querySelector(".chart-legend");
  if (!box) {
    box = document.createElement("div");
    box.className = "chart-legend";
    box.dataset.testid = "chart-legend";
    box.style.cssText = "position:absolute;top:6px;left:8px;z-index:3;display:flex;gap:12px;"
      + `font-size:11px;color:${COLORS.text};pointer-events:none`;
    if (getComputedStyle(container).position === "static") container.style.position = "relative";
    container.append(box);
  }
  box.replaceChildren(...items.map(({ label, color, dashed }) => {
    const item = document.createElement("span");
    const swatch = document.createElement("span");
    swatch.style.cssText = `display:inline-block;width:14px;margin-right:5px;vertical-align:middle;`
      + `border-top:2px ${dashed ? "dashed" : "solid"} ${color}`;
    item.append(swatch, label);
    return item;
  }));
}

/**
 * Buy and hold beside an equity chart (`equityChart`'s handle): the points' `benchmark`
 * values ([{time, benchmark}], as the equity endpoints send them) as a dashed line on the
 * equity's scale, and a legend naming both lines. `about` is the answer's `benchmark`
 * ({label, note, drawn}); without values the legend says why none is drawn. Call it again
 * with fresh points to redraw. Returns how many benchmark points were drawn.
 */
export function addBenchmark(handle, points, about = null) {
  const charts = lib();
  handle.benchmark ??= handle.chart.addSeries(charts.LineSeries, {
    color: COLORS.warn, lineWidth: 1, lineStyle: DASHED, priceLineVisible: false,
    lastValueVisible: true, crosshairMarkerVisible: false, title: "buy & hold",
  });
  const data = series(points || [], (p) => (Number.isFinite(p.benchmark) ? { value: p.benchmark } : null));
  handle.benchmark.setData(data);
  const label = about?.label || "Buy & hold";
  const items = [{ label: handle.title || "Strategy", color: COLORS.accent }];
  if (data.length) items.push({ label, color: COLORS.warn, dashed: true });
  else if (about?.note) items.push({ label: about.note, color: "transparent" });
  const container = handle.container ?? handle.chart.chartElement().parentElement;
  if (container) {
    legend(container, items);
    if (about?.note) container.title = about.note;
  }
  return data.length;
}

/** Simple moving average of closes over `n` bars, as line data. */
function sma(bars, n) {
  const out = [];
  let sum = 0;
  for (let i = 0; i < bars.length; i += 1) {
    sum += bars[i].close;
    if (i >= n) sum -= bars[i - n].close;
    if (i >= n - 1) out.push({ time: bars[i].time, value: sum / n });
  }
  return out;
}

/** The candlestick series every price chart draws, in the dashboard's up and down colours. */
function addCandles(chart, charts) {
  return chart.addSeries(charts.CandlestickSeries, {
    upColor: COLORS.up, downColor: COLORS.down, borderVisible: false,
    wickUpColor: COLORS.up, wickDownColor: COLORS.down,
  });
}

/** Candlesticks with volume, two moving averages and forecast bands (80% and 95%). */
export function candleChart(container) {
  const charts = lib();
  const chart = create(container);
  const candles = addCandles(chart, charts);
  const volume = chart.addSeries(charts.HistogramSeries, {
    priceFormat: { type: "volume" }, priceScaleId: "volume", lastValueVisible: false, priceLineVisible: false,
  });
  volume.priceScale().applyOptions({ scaleMargins: { top: 0.84, bottom: 0 } });
  const line = (color, extra = {}) => chart.addSeries(charts.LineSeries, {
    color, lineWidth: 1, priceLineVisible: false, lastValueVisible: false, crosshairMarkerVisible: false, ...extra,
  });
  const sma20 = line(COLORS.sma20);
  const sma50 = line(COLORS.sma50);
  const bands = {
    lower95: line("rgba(77, 155, 255, 0.45)", { lineStyle: DASHED }),
    upper95: line("rgba(77, 155, 255, 0.45)", { lineStyle: DASHED }),
    lower80: line("rgba(77, 155, 255, 0.95)"),
    upper80: line("rgba(77, 155, 255, 0.95)"),
    mean: line(COLORS.warn, { lineWidth: 2, lastValueVisible: true, title: "forecast" }),
  };
  let lastBar = null;
  let barCount = 0;
  let barSeconds = 86400;
  // A few bars ahead are lost among hundreds: show the recent past and the forecast.
  const focus = (ahead) => {
    if (!ahead || barCount <= 160) return chart.timeScale().fitContent();
    const shown = Math.max(60, Math.min(150, Math.round(container.clientWidth / 6)));
    chart.timeScale().setVisibleLogicalRange({ from: barCount - shown, to: barCount + ahead + 3 });
  };
  // A forecast step without a time is placed one bar interval after the previous one.
  const stepTime = (p) => (p.time ? toTime(p.time) : lastBar ? lastBar.time + p.step * barSeconds : NaN);

  return {
    chart,
    setBars(rawBars) {
      const bars = series(rawBars, (b) => (Number.isFinite(b.close) ? { open: b.open, high: b.high, low: b.low, close: b.close, volume: b.volume } : null));
      candles.setData(bars.map(({ time, open, high, low, close }) => ({ time, open, high, low, close })));
      volume.setData(bars.map((b) => ({
        time: b.time, value: Number.isFinite(b.volume) ? b.volume : 0,
        color: b.close >= b.open ? "rgba(38, 176, 137, 0.3)" : "rgba(239, 91, 91, 0.3)",
      })));
      sma20.setData(sma(bars, 20));
      sma50.setData(sma(bars, 50));
      lastBar = bars.length ? bars[bars.length - 1] : null;
      barCount = bars.length;
      if (bars.length > 1) barSeconds = bars[bars.length - 1].time - bars[bars.length - 2].time;
      fitTime(chart, bars);
      return bars.length;
    },
    /** Forecast path [{time, mean, lower80, upper80, lower95, upper95}], drawn from the last bar. */
    setForecast(path) {
      for (const [key, target] of Object.entries(bands)) {
        const data = series(path || [], (p) => (Number.isFinite(p[key]) ? { value: p[key] } : null), stepTime);
        if (lastBar && data.length && data[0].time > lastBar.time) data.unshift({ time: lastBar.time, value: lastBar.close });
        target.setData(data);
      }
      focus((path || []).length);
    },
  };
}

/** The bar time at or before `time` (seconds) among sorted `times`, or the first. */
function barAtOrBefore(times, time) {
  let lo = 0;
  let hi = times.length - 1;
  while (lo < hi) {
    const mid = (lo + hi + 1) >> 1;
    if (times[mid] <= time) lo = mid;
    else hi = mid - 1;
  }
  return times[lo];
}

/** Candlesticks with a run's entries and exits as arrows: a buy below the bar pointing up,
 *  a sell above it pointing down, each with its text. */
export function tradesChart(container) {
  const charts = lib();
  const chart = create(container);
  const candles = addCandles(chart, charts);
  const markers = charts.createSeriesMarkers(candles, []);
  let times = [];
  return {
    chart,
    /** Bars [{time, open, high, low, close}]; returns how many were drawn. */
    setBars(rawBars) {
      const bars = series(rawBars, (b) => (Number.isFinite(b.close) ? { open: b.open, high: b.high, low: b.low, close: b.close } : null));
      candles.setData(bars);
      times = bars.map((b) => b.time);
      fitTime(chart, bars);
      return bars.length;
    },
    /** Fills to mark [{time (ISO), side: "buy"|"sell", text}], placed on the bar they fell in;
     *  those outside the bars drawn are left out. Returns how many were drawn. */
    setTrades(fills) {
      if (!times.length) return 0;
      const first = times[0];
      const last = times[times.length - 1];
      const shown = fills
        .map((f) => ({ ...f, at: toTime(f.time) }))
        .filter((f) => Number.isFinite(f.at) && f.at >= first && f.at <= last)
        .map((f) => ({
          time: barAtOrBefore(times, f.at),
          position: f.side === "buy" ? "belowBar" : "aboveBar",
          shape: f.side === "buy" ? "arrowUp" : "arrowDown",
          color: f.side === "buy" ? COLORS.up : COLORS.down,
          text: f.text,
        }))
        .sort((a, b) => a.time - b.time);
      markers.setMarkers(shown);
      return shown.length;
    },
  };
}

/** Two runs' equity as returns since their start, so runs with different cash compare. */
export function compareChart(container) {
  const charts = lib();
  const chart = create(container);
  const percent = { type: "percent", precision: 1, minMove: 0.1 };
  const a = chart.addSeries(charts.LineSeries, { color: COLORS.accent, lineWidth: 2, priceFormat: percent, title: "A" });
  const b = chart.addSeries(charts.LineSeries, { color: COLORS.warn, lineWidth: 2, priceFormat: percent, title: "B" });
  const hold = chart.addSeries(charts.LineSeries, {
    color: COLORS.text, lineWidth: 1, lineStyle: DASHED, priceFormat: percent, title: "buy & hold A",
    priceLineVisible: false, crosshairMarkerVisible: false,
  });
  const growth = (points, key = "equity") => {
    const data = series(points, (p) => (Number.isFinite(p[key]) ? { value: p[key] } : null));
    const first = data.length ? data[0].value : 0;
    return first > 0 ? data.map((p) => ({ time: p.time, value: (p.value / first - 1) * 100 })) : [];
  };
  return {
    chart,
    /** Two runs' points; A's buy and hold (its points' `benchmark`) is drawn dashed. */
    setData(pointsA, pointsB) {
      const da = growth(pointsA);
      a.setData(da);
      b.setData(growth(pointsB));
      const held = growth(pointsA, "benchmark");
      hold.setData(held);
      legend(container, [
        { label: "A", color: COLORS.accent }, { label: "B", color: COLORS.warn },
        ...(held.length ? [{ label: "Buy & hold (A's symbols)", color: COLORS.text, dashed: true }] : []),
      ]);
      fitTime(chart, da);
    },
  };
}
