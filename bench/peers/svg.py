"""Small SVG charts with the standard library only (report.py draws the benchmark plots
with them): grouped bars and lines, optionally on a log10 axis. Output depends only on the
input, so regenerating a report gives the same files byte for byte."""

import math
from xml.sax.saxutils import escape

COLOURS = {"tern": "#1b7837", "prosody": "#2166ac", "ejabberd": "#b2182b"}
FALLBACK = ["#762a83", "#e08214", "#4d4d4d"]
W, H = 640, 360
LEFT, RIGHT, TOP, BOTTOM = 70, 20, 40, 70


def colour(name, i):
    return COLOURS.get(name, FALLBACK[i % len(FALLBACK)])


def num(v):
    """A short label for a value."""
    if v == 0:
        return "0"
    if abs(v) >= 100:
        return f"{v:.0f}"
    if abs(v) >= 10:
        return f"{v:.1f}"
    if abs(v) >= 1:
        return f"{v:.2f}"
    return f"{v:.3g}"


class Axis:
    """Maps values to pixels on [lo, hi], linear or log10."""

    def __init__(self, values, log, pixels, start_at_zero=True):
        values = [v for v in values if v is not None and (v > 0 or not log)]
        if not values:
            values = [1.0]
        self.log = log
        if log:
            lo = 10 ** math.floor(math.log10(min(values)))
            hi = 10 ** math.ceil(math.log10(max(values)))
            if hi <= lo:
                hi = lo * 10
            self.lo, self.hi = math.log10(lo), math.log10(hi)
        else:
            lo = 0.0 if start_at_zero else min(values)
            hi = max(values) * 1.1 or 1.0
            self.lo, self.hi = lo, hi
        self.pixels = pixels

    def __call__(self, v):
        x = math.log10(v) if self.log else v
        return (x - self.lo) / (self.hi - self.lo) * self.pixels

    def ticks(self):
        if self.log:
            return [10 ** e for e in range(int(self.lo), int(self.hi) + 1)]
        step = 10 ** math.floor(math.log10((self.hi - self.lo) or 1))
        while (self.hi - self.lo) / step < 4:
            step /= 2
        while (self.hi - self.lo) / step > 8:
            step *= 2
        first = math.ceil(self.lo / step) * step
        out, v = [], first
        while v <= self.hi + 1e-9:
            out.append(round(v, 10))
            v += step
        return out


def frame(title, ylabel):
    return [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}" '
        'font-family="sans-serif" font-size="12">',
        f'<rect width="{W}" height="{H}" fill="white"/>',
        f'<text x="{W / 2:.0f}" y="22" text-anchor="middle" font-size="15" font-weight="bold">{escape(title)}</text>',
        f'<text transform="translate(16,{TOP + (H - TOP - BOTTOM) / 2:.0f}) rotate(-90)" text-anchor="middle">{escape(ylabel)}</text>',
    ]


def y_grid(parts, axis):
    plot_h = H - TOP - BOTTOM
    for t in axis.ticks():
        y = TOP + plot_h - axis(t)
        parts.append(f'<line x1="{LEFT}" y1="{y:.1f}" x2="{W - RIGHT}" y2="{y:.1f}" stroke="#ddd"/>')
        parts.append(f'<text x="{LEFT - 6}" y="{y + 4:.1f}" text-anchor="end">{num(t)}</text>')


def legend(parts, names):
    x = LEFT
    for i, name in enumerate(names):
        parts.append(f'<rect x="{x}" y="{H - 22}" width="12" height="12" fill="{colour(name, i)}"/>')
        parts.append(f'<text x="{x + 16}" y="{H - 12}">{escape(name)}</text>')
        x += 24 + 8 * len(name)


def bars(title, ylabel, categories, series, log=False):
    """categories: labels along x; series: [(name, [value or None per category])]."""
    parts = frame(title, ylabel)
    plot_w, plot_h = W - LEFT - RIGHT, H - TOP - BOTTOM
    axis = Axis([v for _, vs in series for v in vs], log, plot_h)
    y_grid(parts, axis)
    group = plot_w / max(len(categories), 1)
    bar = group * 0.8 / max(len(series), 1)
    for c, cat in enumerate(categories):
        x0 = LEFT + c * group + group * 0.1
        parts.append(f'<text x="{LEFT + (c + 0.5) * group:.1f}" y="{TOP + plot_h + 16}" text-anchor="middle">{escape(cat)}</text>')
        for s, (name, values) in enumerate(series):
            v = values[c] if c < len(values) else None
            x = x0 + s * bar
            if v is None or (log and v <= 0):
                parts.append(f'<text x="{x + bar / 2:.1f}" y="{TOP + plot_h - 4}" text-anchor="middle" fill="#888">n/a</text>')
                continue
            h = max(axis(v), 1.0) if not log else max(axis(v), 1.0)
            y = TOP + plot_h - h
            parts.append(f'<rect x="{x:.1f}" y="{y:.1f}" width="{bar * 0.92:.1f}" height="{h:.1f}" fill="{colour(name, s)}"/>')
            parts.append(f'<text x="{x + bar / 2:.1f}" y="{y - 3:.1f}" text-anchor="middle" font-size="10">{num(v)}</text>')
    parts.append(f'<line x1="{LEFT}" y1="{TOP + plot_h}" x2="{W - RIGHT}" y2="{TOP + plot_h}" stroke="black"/>')
    legend(parts, [name for name, _ in series])
    parts.append("</svg>")
    return "\n".join(parts) + "\n"


def lines(title, xlabel, ylabel, series, logx=False, logy=False, hline=None):
    """series: [(name, [(x, y), ...])]; hline: (value, label) drawn across, e.g. a limit."""
    parts = frame(title, ylabel)
    plot_w, plot_h = W - LEFT - RIGHT, H - TOP - BOTTOM
    xs = [x for _, pts in series for x, _ in pts]
    ys = [y for _, pts in series for _, y in pts] + ([hline[0]] if hline else [])
    xaxis = Axis(xs, logx, plot_w, start_at_zero=not logx)
    yaxis = Axis(ys, logy, plot_h)
    y_grid(parts, yaxis)
    for t in xaxis.ticks():
        x = LEFT + xaxis(t)
        if LEFT - 1 <= x <= W - RIGHT + 1:
            parts.append(f'<text x="{x:.1f}" y="{TOP + plot_h + 16}" text-anchor="middle">{num(t)}</text>')
    parts.append(f'<text x="{LEFT + plot_w / 2:.0f}" y="{TOP + plot_h + 34}" text-anchor="middle">{escape(xlabel)}</text>')
    if hline:
        y = TOP + plot_h - yaxis(hline[0])
        parts.append(f'<line x1="{LEFT}" y1="{y:.1f}" x2="{W - RIGHT}" y2="{y:.1f}" stroke="#888" stroke-dasharray="4 3"/>')
        parts.append(f'<text x="{W - RIGHT - 4}" y="{y - 4:.1f}" text-anchor="end" fill="#555">{escape(hline[1])}</text>')
    for s, (name, pts) in enumerate(series):
        pts = [(x, y) for x, y in pts if x is not None and y is not None and (x > 0 or not logx) and (y > 0 or not logy)]
        if not pts:
            continue
        coords = " ".join(f"{LEFT + xaxis(x):.1f},{TOP + plot_h - yaxis(y):.1f}" for x, y in pts)
        parts.append(f'<polyline points="{coords}" fill="none" stroke="{colour(name, s)}" stroke-width="2"/>')
        for x, y in pts:
            parts.append(f'<circle cx="{LEFT + xaxis(x):.1f}" cy="{TOP + plot_h - yaxis(y):.1f}" r="3" fill="{colour(name, s)}"/>')
    parts.append(f'<line x1="{LEFT}" y1="{TOP + plot_h}" x2="{W - RIGHT}" y2="{TOP + plot_h}" stroke="black"/>')
    legend(parts, [name for name, _ in series])
    parts.append("</svg>")
    return "\n".join(parts) + "\n"
