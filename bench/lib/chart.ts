/*
 * A hand-written SVG of two horizontal bar charts (acceptance req/s, drain jobs/s); no dependency.
 */

export interface Bar {
  label: string;
  value: number | undefined;
  /** Shown instead of a bar (e.g. "skipped: Redis unreachable"). */
  note?: string;
  highlight?: boolean;
  /** Small text after the value (e.g. "0.83x bare"). */
  detail?: string;
}

export interface Panel {
  title: string;
  unit: string;
  bars: Bar[];
}

const WIDTH = 900;
const LABEL_WIDTH = 190;
const VALUE_SPACE = 380;
const BAR_HEIGHT = 26;
const GAP = 10;
const FONT = "font-family='system-ui, -apple-system, Segoe UI, Helvetica, Arial, sans-serif'";

function escapeXml(text: string): string {
  return text.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
}

function format(value: number): string {
  return Math.round(value).toLocaleString('en-US');
}

function panel(spec: Panel, top: number): { svg: string; height: number } {
  const parts: string[] = [];
  parts.push(`<text x='0' y='${top + 18}' font-size='16' font-weight='600' fill='#1a202c' ${FONT}>${escapeXml(spec.title)}</text>`);
  const max = Math.max(1, ...spec.bars.map((bar) => bar.value ?? 0));
  const plotWidth = WIDTH - LABEL_WIDTH - VALUE_SPACE;
  let y = top + 32;
  for (const bar of spec.bars) {
    parts.push(
      `<text x='${LABEL_WIDTH - 10}' y='${y + BAR_HEIGHT / 2 + 5}' text-anchor='end' font-size='13' fill='#2d3748' ${FONT}>${escapeXml(bar.label)}</text>`,
    );
    if (bar.value === undefined || !Number.isFinite(bar.value)) {
      parts.push(
        `<text x='${LABEL_WIDTH}' y='${y + BAR_HEIGHT / 2 + 5}' font-size='12' fill='#718096' ${FONT}>${escapeXml(bar.note ?? 'not measured')}</text>`,
      );
    } else {
      const width = Math.max(1, (bar.value / max) * plotWidth);
      const color = bar.highlight ? '#2b6cb0' : '#a0aec0';
      parts.push(`<rect x='${LABEL_WIDTH}' y='${y}' width='${width.toFixed(1)}' height='${BAR_HEIGHT}' rx='3' fill='${color}'/>`);
      const text = `${format(bar.value)} ${spec.unit}${bar.detail ? ` · ${bar.detail}` : ''}`;
      const textWidth = text.length * 6.6; // about 12px system-ui
      const textY = y + BAR_HEIGHT / 2 + 5;
      if (LABEL_WIDTH + width + 8 + textWidth <= WIDTH) {
        parts.push(`<text x='${(LABEL_WIDTH + width + 8).toFixed(1)}' y='${textY}' font-size='12' fill='#2d3748' ${FONT}>${escapeXml(text)}</text>`);
      } else {
        // No room after the bar: write inside it, from its right end.
        const fill = bar.highlight ? '#ffffff' : '#1a202c';
        parts.push(
          `<text x='${(LABEL_WIDTH + width - 8).toFixed(1)}' y='${textY}' text-anchor='end' font-size='12' fill='${fill}' ${FONT}>${escapeXml(text)}</text>`,
        );
      }
    }
    y += BAR_HEIGHT + GAP;
  }
  return { svg: parts.join('\n  '), height: y - top };
}

/** The whole chart: panels stacked, a caption at the bottom. */
export function renderChart(panels: Panel[], caption: string): string {
  let top = 10;
  const bodies: string[] = [];
  for (const spec of panels) {
    const { svg, height } = panel(spec, top);
    bodies.push(svg);
    top += height + 24;
  }
  const height = top + 20;
  return `<svg xmlns='http://www.w3.org/2000/svg' width='${WIDTH}' height='${height}' viewBox='0 0 ${WIDTH} ${height}' role='img' aria-label='asyncfirst benchmark'>
  <rect width='100%' height='100%' fill='#ffffff'/>
  ${bodies.join('\n  ')}
  <text x='0' y='${height - 8}' font-size='11' fill='#718096' ${FONT}>${escapeXml(caption)}</text>
</svg>
`;
}
