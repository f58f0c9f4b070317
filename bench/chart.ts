// A grouped bar chart as hand-written SVG (no dependency): one group per measurement point, one bar per
// configuration, the value printed above each bar. Bench code only.

export interface BarGroup {
  readonly label: string;
  /** Second line under the group label (e.g. the ratio Anchor/nginx). */
  readonly sublabel?: string;
  readonly bars: readonly { readonly series: string; readonly value: number }[];
}

export interface ChartOptions {
  readonly title: string;
  readonly subtitle?: string;
  readonly yLabel: string;
  /** Series in legend order, with their colours. */
  readonly series: readonly { readonly name: string; readonly color: string }[];
  readonly footer?: readonly string[];
}

const esc = (s: string): string => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');

function niceMax(v: number): number {
  if (!(v > 0)) return 1;
  const p = 10 ** Math.floor(Math.log10(v));
  for (const m of [1, 1.2, 1.5, 2, 2.5, 3, 4, 5, 6, 8, 10]) if (m * p >= v) return m * p;
  return 10 * p;
}

function short(v: number): string {
  if (!Number.isFinite(v)) return '–';
  if (v >= 1e6) return `${(v / 1e6).toFixed(v >= 1e7 ? 0 : 1)}M`;
  if (v >= 1e4) return `${Math.round(v / 1e3)}k`;
  if (v >= 1e3) return `${(v / 1e3).toFixed(1)}k`;
  return String(Math.round(v));
}

export function barChartSvg(groups: readonly BarGroup[], o: ChartOptions): string {
  const barW = 26;
  const gap = 4;
  const groupPad = 34;
  const left = 78;
  const right = 24;
  const top = o.subtitle !== undefined ? 92 : 72;
  const plotH = 330;
  const bottom = 70 + 16 * (o.footer?.length ?? 0);
  const groupW = o.series.length * (barW + gap) - gap + groupPad;
  const width = Math.max(640, left + right + groups.length * groupW);
  const height = top + plotH + bottom;
  const max = niceMax(Math.max(...groups.flatMap((g) => g.bars.map((b) => (Number.isFinite(b.value) ? b.value : 0)))));
  const y = (v: number): number => top + plotH - (Math.max(0, v) / max) * plotH;
  const out: string[] = [];
  out.push(`<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="Helvetica, Arial, sans-serif" font-size="12">`);
  out.push(`<rect width="${width}" height="${height}" fill="#ffffff"/>`);
  out.push(`<text x="${left}" y="28" font-size="17" font-weight="bold">${esc(o.title)}</text>`);
  if (o.subtitle !== undefined) out.push(`<text x="${left}" y="50" fill="#555">${esc(o.subtitle)}</text>`);
  // Legend.
  let lx = left;
  const ly = top - 22;
  for (const s of o.series) {
    out.push(`<rect x="${lx}" y="${ly - 10}" width="12" height="12" fill="${s.color}"/>`);
    out.push(`<text x="${lx + 16}" y="${ly}">${esc(s.name)}</text>`);
    lx += 28 + s.name.length * 7;
  }
  // Grid and axis.
  for (let i = 0; i <= 5; i++) {
    const v = (max * i) / 5;
    const gy = y(v);
    out.push(`<line x1="${left}" y1="${gy}" x2="${width - right}" y2="${gy}" stroke="${i === 0 ? '#333' : '#e3e3e3'}"/>`);
    out.push(`<text x="${left - 8}" y="${gy + 4}" text-anchor="end" fill="#333">${short(v)}</text>`);
  }
  out.push(`<text transform="translate(18 ${top + plotH / 2}) rotate(-90)" text-anchor="middle" fill="#333">${esc(o.yLabel)}</text>`);
  // Bars.
  groups.forEach((g, gi) => {
    const gx = left + groupPad / 2 + gi * groupW;
    o.series.forEach((s, si) => {
      const b = g.bars.find((x) => x.series === s.name);
      const bx = gx + si * (barW + gap);
      if (b === undefined || !Number.isFinite(b.value)) {
        out.push(`<text x="${bx + barW / 2}" y="${y(0) - 4}" text-anchor="middle" font-size="10" fill="#999">n/a</text>`);
        return;
      }
      const by = y(b.value);
      out.push(`<rect x="${bx}" y="${by.toFixed(1)}" width="${barW}" height="${(y(0) - by).toFixed(1)}" fill="${s.color}"><title>${esc(`${g.label} ${s.name}: ${Math.round(b.value)}`)}</title></rect>`);
      out.push(`<text x="${bx + barW / 2}" y="${(by - 4).toFixed(1)}" text-anchor="middle" font-size="10" fill="#222">${short(b.value)}</text>`);
    });
    const cx = gx + (o.series.length * (barW + gap) - gap) / 2;
    out.push(`<text x="${cx}" y="${top + plotH + 18}" text-anchor="middle" font-weight="bold">${esc(g.label)}</text>`);
    if (g.sublabel !== undefined) out.push(`<text x="${cx}" y="${top + plotH + 34}" text-anchor="middle" fill="#555" font-size="11">${esc(g.sublabel)}</text>`);
  });
  (o.footer ?? []).forEach((line, i) => {
    out.push(`<text x="${left}" y="${top + plotH + 58 + 16 * i}" fill="#555" font-size="11">${esc(line)}</text>`);
  });
  out.push('</svg>');
  return out.join('\n') + '\n';
}

/** Several SVG documents (as barChartSvg writes them) stacked vertically into one. */
export function stackSvgs(svgs: readonly string[]): string {
  let y = 0;
  let width = 0;
  const parts: string[] = [];
  for (const s of svgs) {
    const w = Number(/width="(\d+(?:\.\d+)?)"/.exec(s)?.[1] ?? 0);
    const h = Number(/height="(\d+(?:\.\d+)?)"/.exec(s)?.[1] ?? 0);
    parts.push(s.replace(/^<svg /, `<svg x="0" y="${y}" `));
    y += h;
    width = Math.max(width, w);
  }
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${y}" viewBox="0 0 ${width} ${y}">\n<rect width="${width}" height="${y}" fill="#ffffff"/>\n${parts.join('')}</svg>\n`;
}
