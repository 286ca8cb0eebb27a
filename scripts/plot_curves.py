#!/usr/bin/env python3
"""Line plots of stage-4 metrics as PNG, with the Python standard library only (no matplotlib here).

    scripts/plot_curves.py OUT.png KEY LABEL=RUN/metrics.jsonl [LABEL=...] [--smooth N] [--title TEXT]

KEY is a metrics.jsonl field, dotted for nested ones (`rl.kl`, `rl.entropy`, `reward_mean`); each series is
its value by `step`, averaged over a trailing window of N steps (default 10). Labels and the title are
drawn in a 5x7 bitmap font (upper-case letters, digits, `.-_=+%/()`).
"""
import json
import struct
import sys
import zlib

FONT = {  # 5x7 glyphs, one row per string, '#' = ink
    'A': [" ### ", "#   #", "#   #", "#####", "#   #", "#   #", "#   #"],
    'B': ["#### ", "#   #", "#   #", "#### ", "#   #", "#   #", "#### "],
    'C': [" ### ", "#   #", "#    ", "#    ", "#    ", "#   #", " ### "],
    'D': ["#### ", "#   #", "#   #", "#   #", "#   #", "#   #", "#### "],
    'E': ["#####", "#    ", "#    ", "#### ", "#    ", "#    ", "#####"],
    'F': ["#####", "#    ", "#    ", "#### ", "#    ", "#    ", "#    "],
    'G': [" ### ", "#   #", "#    ", "# ###", "#   #", "#   #", " ####"],
    'H': ["#   #", "#   #", "#   #", "#####", "#   #", "#   #", "#   #"],
    'I': [" ### ", "  #  ", "  #  ", "  #  ", "  #  ", "  #  ", " ### "],
    'J': ["  ###", "   # ", "   # ", "   # ", "   # ", "#  # ", " ##  "],
    'K': ["#   #", "#  # ", "# #  ", "##   ", "# #  ", "#  # ", "#   #"],
    'L': ["#    ", "#    ", "#    ", "#    ", "#    ", "#    ", "#####"],
    'M': ["#   #", "## ##", "# # #", "# # #", "#   #", "#   #", "#   #"],
    'N': ["#   #", "##  #", "# # #", "#  ##", "#   #", "#   #", "#   #"],
    'O': [" ### ", "#   #", "#   #", "#   #", "#   #", "#   #", " ### "],
    'P': ["#### ", "#   #", "#   #", "#### ", "#    ", "#    ", "#    "],
    'Q': [" ### ", "#   #", "#   #", "#   #", "# # #", "#  # ", " ## #"],
    'R': ["#### ", "#   #", "#   #", "#### ", "# #  ", "#  # ", "#   #"],
    'S': [" ####", "#    ", "#    ", " ### ", "    #", "    #", "#### "],
    'T': ["#####", "  #  ", "  #  ", "  #  ", "  #  ", "  #  ", "  #  "],
    'U': ["#   #", "#   #", "#   #", "#   #", "#   #", "#   #", " ### "],
    'V': ["#   #", "#   #", "#   #", "#   #", "#   #", " # # ", "  #  "],
    'W': ["#   #", "#   #", "#   #", "# # #", "# # #", "# # #", " # # "],
    'X': ["#   #", "#   #", " # # ", "  #  ", " # # ", "#   #", "#   #"],
    'Y': ["#   #", "#   #", " # # ", "  #  ", "  #  ", "  #  ", "  #  "],
    'Z': ["#####", "    #", "   # ", "  #  ", " #   ", "#    ", "#####"],
    '0': [" ### ", "#   #", "#  ##", "# # #", "##  #", "#   #", " ### "],
    '1': ["  #  ", " ##  ", "  #  ", "  #  ", "  #  ", "  #  ", " ### "],
    '2': [" ### ", "#   #", "    #", "   # ", "  #  ", " #   ", "#####"],
    '3': ["#### ", "    #", "    #", " ### ", "    #", "    #", "#### "],
    '4': ["#   #", "#   #", "#   #", "#####", "    #", "    #", "    #"],
    '5': ["#####", "#    ", "#### ", "    #", "    #", "#   #", " ### "],
    '6': [" ### ", "#    ", "#    ", "#### ", "#   #", "#   #", " ### "],
    '7': ["#####", "    #", "   # ", "  #  ", "  #  ", "  #  ", "  #  "],
    '8': [" ### ", "#   #", "#   #", " ### ", "#   #", "#   #", " ### "],
    '9': [" ### ", "#   #", "#   #", " ####", "    #", "    #", " ### "],
    '.': ["     ", "     ", "     ", "     ", "     ", " ##  ", " ##  "],
    '-': ["     ", "     ", "     ", "#####", "     ", "     ", "     "],
    '_': ["     ", "     ", "     ", "     ", "     ", "     ", "#####"],
    '=': ["     ", "     ", "#####", "     ", "#####", "     ", "     "],
    '+': ["     ", "  #  ", "  #  ", "#####", "  #  ", "  #  ", "     "],
    '%': ["##  #", "##  #", "   # ", "  #  ", " #   ", "#  ##", "#  ##"],
    '/': ["    #", "    #", "   # ", "  #  ", " #   ", "#    ", "#    "],
    '(': ["   # ", "  #  ", " #   ", " #   ", " #   ", "  #  ", "   # "],
    ')': [" #   ", "  #  ", "   # ", "   # ", "   # ", "  #  ", " #   "],
    ' ': ["     "] * 7,
}
COLORS = [(31, 119, 180), (214, 39, 40), (44, 160, 44), (148, 103, 189), (255, 127, 14), (23, 190, 207), (140, 86, 75)]
W, H, LEFT, RIGHT, TOP, BOTTOM = 900, 520, 80, 230, 40, 50


class Canvas:
    def __init__(self, w, h):
        self.w, self.h = w, h
        self.px = bytearray(b"\xff" * (w * h * 3))

    def dot(self, x, y, c):
        if 0 <= x < self.w and 0 <= y < self.h:
            i = (y * self.w + x) * 3
            self.px[i:i + 3] = bytes(c)

    def line(self, x0, y0, x1, y1, c, width=1):
        n = max(abs(x1 - x0), abs(y1 - y0), 1)
        for i in range(n + 1):
            x, y = round(x0 + (x1 - x0) * i / n), round(y0 + (y1 - y0) * i / n)
            for dx in range(width):
                for dy in range(width):
                    self.dot(x + dx, y + dy, c)

    def text(self, x, y, s, c=(0, 0, 0), scale=2):
        for ch in s.upper():
            glyph = FONT.get(ch, FONT[' '])
            for r, row in enumerate(glyph):
                for col, ink in enumerate(row):
                    if ink == '#':
                        for dx in range(scale):
                            for dy in range(scale):
                                self.dot(x + col * scale + dx, y + r * scale + dy, c)
            x += 6 * scale

    def png(self, path):
        raw = b"".join(b"\x00" + bytes(self.px[y * self.w * 3:(y + 1) * self.w * 3]) for y in range(self.h))

        def chunk(kind, data):
            return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

        with open(path, "wb") as f:
            f.write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", self.w, self.h, 8, 2, 0, 0, 0))
                    + chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b""))


def series(path, key, smooth):
    points = []
    for line in open(path):
        row = json.loads(line)
        value = row
        for part in key.split('.'):
            value = value.get(part) if isinstance(value, dict) else None
        if isinstance(value, (int, float)) and value == value:
            points.append((row["step"], float(value)))
    out = []
    for i, (step, _) in enumerate(points):
        window = [v for _, v in points[max(0, i - smooth + 1):i + 1]]
        out.append((step, sum(window) / len(window)))
    return out


def label(v):
    return f"{v:.3g}" if abs(v) < 1000 else f"{v:.0f}"


def main(argv):
    smooth, title, args = 10, None, []
    it = iter(argv[1:])
    for a in it:
        if a == "--smooth":
            smooth = int(next(it))
        elif a == "--title":
            title = next(it)
        else:
            args.append(a)
    if len(args) < 3:
        sys.exit(__doc__)
    out, key, runs = args[0], args[1], [a.split("=", 1) for a in args[2:]]
    data = [(name, series(path, key, smooth)) for name, path in runs]
    xs = [x for _, s in data for x, _ in s]
    ys = [y for _, s in data for _, y in s]
    if not xs:
        sys.exit(f"no `{key}` values in {[p for _, p in runs]}")
    x0, x1 = min(xs), max(xs) if max(xs) > min(xs) else min(xs) + 1
    y0, y1 = min(ys), max(ys)
    pad = (y1 - y0) * 0.05 or abs(y0) * 0.05 or 1.0
    y0, y1 = y0 - pad, y1 + pad
    c = Canvas(W, H)
    px = lambda x: LEFT + round((x - x0) / (x1 - x0) * (W - LEFT - RIGHT))
    py = lambda y: H - BOTTOM - round((y - y0) / (y1 - y0) * (H - TOP - BOTTOM))
    grey, black = (200, 200, 200), (0, 0, 0)
    for i in range(5):
        y = y0 + (y1 - y0) * i / 4
        c.line(LEFT, py(y), W - RIGHT, py(y), grey)
        c.text(4, py(y) - 7, label(y), black, 2)
        x = x0 + (x1 - x0) * i / 4
        c.line(px(x), H - BOTTOM, px(x), H - BOTTOM + 5, black)
        c.text(px(x) - 10, H - BOTTOM + 10, label(x), black, 2)
    c.line(LEFT, TOP, LEFT, H - BOTTOM, black)
    c.line(LEFT, H - BOTTOM, W - RIGHT, H - BOTTOM, black)
    c.text(W - RIGHT + 50, H - BOTTOM + 10, "STEP", black, 2)
    c.text(LEFT, 10, title or f"{key} (MEAN OF {smooth} STEPS)", black, 2)
    for i, (name, s) in enumerate(data):
        color = COLORS[i % len(COLORS)]
        for (a, b), (cc, d) in zip(s, s[1:]):
            c.line(px(a), py(b), px(cc), py(d), color, 2)
        c.line(W - RIGHT + 10, TOP + 12 + i * 24, W - RIGHT + 30, TOP + 12 + i * 24, color, 3)
        c.text(W - RIGHT + 36, TOP + 6 + i * 24, name[:15], black, 2)
    c.png(out)


if __name__ == "__main__":
    main(sys.argv)
