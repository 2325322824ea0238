// admin-charts.js: the small charts of /admin, drawn as inline SVG (no chart library).
//
//   lineChart(container, { times, series: [{ label, values, color, dashed }], summary, caption });
//   stackedBars(container, { times, stacks: [{ label, values, color }], summary, caption });
//
// `times` are the buckets' starts (ISO strings), `values` one number (or null: no sample) per
// bucket. Each chart is an image with `summary` as its accessible name, a legend, and a
// <details> table of the same numbers for whoever would rather read them.

const SVG = "http://www.w3.org/2000/svg";
const WIDTH = 600;
const HEIGHT = 180;
const PAD = { top: 12, right: 12, bottom: 24, left: 40 };

function svgElement(tag, attributes = {}) {
  const node = document.createElementNS(SVG, tag);
  for (const [name, value] of Object.entries(attributes)) node.setAttribute(name, String(value));
  return node;
}

function niceMax(value) {
  if (value <= 0) return 1;
  const power = 10 ** Math.floor(Math.log10(value));
  for (const step of [1, 2, 5, 10]) if (value <= step * power) return step * power;
  return 10 * power;
}

function shortTime(iso, locale, withDay) {
  const options = { hour: "2-digit", minute: "2-digit" };
  if (withDay) options.weekday = "short";
  return new Intl.DateTimeFormat(locale, options).format(new Date(iso));
}

function frame(times, maximum, locale, unit) {
  const svg = svgElement("svg", {
    viewBox: `0 0 ${WIDTH} ${HEIGHT}`, class: "chart__svg", focusable: "false",
  });
  const bottom = HEIGHT - PAD.bottom;
  svg.append(svgElement("line", { x1: PAD.left, x2: WIDTH - PAD.right, y1: bottom, y2: bottom, class: "chart__axis" }));
  svg.append(svgElement("line", { x1: PAD.left, x2: WIDTH - PAD.right, y1: PAD.top, y2: PAD.top, class: "chart__grid" }));
  const label = (x, y, text, anchor) => {
    const node = svgElement("text", { x, y, "text-anchor": anchor, class: "chart__label" });
    node.textContent = text;
    svg.append(node);
  };
  label(PAD.left - 6, PAD.top + 4, `${maximum}${unit}`, "end");
  label(PAD.left - 6, bottom, `0`, "end");
  if (times.length) {
    const first = times[0];
    const last = times[times.length - 1];
    // Over more than half a day, the times need their day to be read right.
    const withDay = new Date(last) - new Date(first) > 12 * 3600 * 1000;
    label(PAD.left, HEIGHT - 6, shortTime(first, locale, withDay), "start");
    label(WIDTH - PAD.right, HEIGHT - 6, shortTime(last, locale, withDay), "end");
  }
  return svg;
}

function x(index, count) {
  const span = WIDTH - PAD.left - PAD.right;
  return PAD.left + (count <= 1 ? span / 2 : (span * index) / (count - 1));
}

function y(value, maximum) {
  const span = HEIGHT - PAD.top - PAD.bottom;
  return HEIGHT - PAD.bottom - (span * value) / maximum;
}

function legend(entries) {
  const list = document.createElement("ul");
  list.className = "chart__legend";
  for (const entry of entries) {
    const item = document.createElement("li");
    const swatch = document.createElement("span");
    swatch.className = `chart__swatch${entry.dashed ? " chart__swatch--dashed" : ""}`;
    swatch.style.setProperty("--swatch", entry.color);
    swatch.setAttribute("aria-hidden", "true");
    item.append(swatch, document.createTextNode(entry.label));
    list.append(item);
  }
  return list;
}

function numbersTable(times, columns, caption, locale) {
  const details = document.createElement("details");
  details.className = "chart__numbers";
  const summary = document.createElement("summary");
  summary.textContent = caption;
  const table = document.createElement("table");
  const head = table.createTHead().insertRow();
  const corner = document.createElement("th");
  corner.scope = "col";
  head.append(corner);
  for (const column of columns) {
    const cell = document.createElement("th");
    cell.scope = "col";
    cell.textContent = column.label;
    head.append(cell);
  }
  const body = table.createTBody();
  const format = new Intl.DateTimeFormat(locale, { dateStyle: "short", timeStyle: "short" });
  times.forEach((time, index) => {
    if (columns.every((column) => !column.values[index])) return; // the quiet buckets: no row
    const row = body.insertRow();
    const when = document.createElement("th");
    when.scope = "row";
    when.textContent = format.format(new Date(time));
    row.append(when);
    for (const column of columns) row.insertCell().textContent = column.values[index] ?? "–";
  });
  details.append(summary, table);
  return details;
}

function mount(container, svg, summary, entries, table) {
  // Redrawn with new numbers: the table stays open if it was.
  const previous = container.querySelector("details.chart__numbers");
  if (previous && previous.open) table.open = true;
  const figure = document.createElement("div");
  figure.className = "chart__body";
  svg.setAttribute("role", "img");
  svg.setAttribute("aria-label", summary);
  figure.append(svg);
  container.replaceChildren(figure, legend(entries), table);
}

export function lineChart(container, { times, series, summary, caption, locale, unit = "" }) {
  const highest = Math.max(0, ...series.flatMap((line) => line.values.filter((v) => v !== null)));
  const maximum = niceMax(highest);
  const svg = frame(times, maximum, locale, unit);
  for (const line of series) {
    // A gap where there is no sample: one polyline per run of numbers.
    let points = [];
    const flush = () => {
      if (points.length === 1) {
        const [px, py] = points[0].split(",");
        svg.append(svgElement("circle", { cx: px, cy: py, r: 3, fill: line.color }));
      } else if (points.length > 1) {
        svg.append(svgElement("polyline", {
          points: points.join(" "), fill: "none", stroke: line.color, "stroke-width": 2.5,
          "stroke-dasharray": line.dashed ? "6 4" : "none", "vector-effect": "non-scaling-stroke",
        }));
      }
      points = [];
    };
    line.values.forEach((value, index) => {
      if (value === null || value === undefined) { flush(); return; }
      points.push(`${x(index, times.length).toFixed(1)},${y(value, maximum).toFixed(1)}`);
    });
    flush();
  }
  mount(container, svg, summary, series, numbersTable(times, series, caption, locale));
}

export function stackedBars(container, { times, stacks, summary, caption, locale }) {
  const totals = times.map((_, index) => stacks.reduce((sum, stack) => sum + (stack.values[index] || 0), 0));
  const maximum = niceMax(Math.max(0, ...totals));
  const svg = frame(times, maximum, locale, "");
  const span = WIDTH - PAD.left - PAD.right;
  const slot = span / Math.max(times.length, 1);
  const barWidth = Math.max(1, slot * 0.7);
  times.forEach((_, index) => {
    let base = 0;
    for (const stack of stacks) {
      const value = stack.values[index] || 0;
      if (!value) continue;
      const top = y(base + value, maximum);
      svg.append(svgElement("rect", {
        x: (PAD.left + slot * index + (slot - barWidth) / 2).toFixed(1),
        y: top.toFixed(1),
        width: barWidth.toFixed(1),
        height: (y(base, maximum) - top).toFixed(1),
        fill: stack.color,
      }));
      base += value;
    }
  });
  mount(container, svg, summary, stacks, numbersTable(times, stacks, caption, locale));
}
