"""Pixel statistics of a PNG screenshot (stdlib only), printed as JSON for the report test.

Counts non-white pixels and pixels close to the chart line colour #2060c0 (and to each extra
colour given as RRGGBB after the file), so the test can tell that the SVG charts were actually
drawn by the browser, not just present in the markup.
"""
import json
import struct
import sys
import zlib


def paeth(a, b, c):
    p = a + b - c
    pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
    if pa <= pb and pa <= pc:
        return a
    return b if pb <= pc else c


def decode(path):
    data = open(path, "rb").read()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    pos, idat = 8, b""
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + length]
        if kind == b"IHDR":
            width, height, depth, colour = struct.unpack(">IIBB", body[:10])
            assert depth == 8 and colour in (2, 6), "only 8-bit RGB/RGBA supported"
            channels = 3 if colour == 2 else 4
        elif kind == b"IDAT":
            idat += body
        pos += 12 + length
    raw = zlib.decompress(idat)
    stride = width * channels
    rows, prev = [], bytearray(stride)
    for y in range(height):
        start = y * (stride + 1)
        kind, line = raw[start], bytearray(raw[start + 1:start + 1 + stride])
        for i in range(stride):
            left = line[i - channels] if i >= channels else 0
            up, corner = prev[i], prev[i - channels] if i >= channels else 0
            predictor = (0, left, up, (left + up) // 2, paeth(left, up, corner))[kind]
            line[i] = (line[i] + predictor) & 0xFF
        rows.append(line)
        prev = line
    return width, height, channels, rows


def near(pixel, colour):
    return all(abs(p - c) < 40 for p, c in zip(pixel, colour))


def main():
    width, height, channels, rows = decode(sys.argv[1])
    extra = {name: bytes.fromhex(name) for name in sys.argv[2:]}
    non_white = line_colour = 0
    counts = dict.fromkeys(extra, 0)
    for line in rows:
        for x in range(0, len(line), channels):
            pixel = line[x:x + 3]
            if min(pixel) < 240:
                non_white += 1
            line_colour += near(pixel, b"\x20\x60\xc0")
            for name, colour in extra.items():
                counts[name] += near(pixel, colour)
    print(json.dumps({"width": width, "height": height, "non_white": non_white,
                      "line_colour": line_colour, "colours": counts}))


if __name__ == "__main__":
    main()
