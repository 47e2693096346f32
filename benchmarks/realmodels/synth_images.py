"""Synthetic images for the feeds (text lines, pages, captchas, portraits), the seeded RNG and image preprocessing."""
from __future__ import annotations

import math
import zlib

import numpy as np


def _rng(model_name: str, seed: int, *extra: int) -> np.random.Generator:
    return np.random.default_rng([zlib.crc32(model_name.encode()), int(seed), *extra])


def _font(size: int):
    from PIL import ImageFont
    # Pillow's embedded FreeType font: the same on every machine (no system fonts).
    return ImageFont.load_default(size=int(size))


_WORDS = ("invoice total amount date account number balance payment due order shipping address customer "  # noqa: SIM905
          "service report annual revenue market share growth quarter profit tax rate receipt station train "
          "ticket platform departure arrival gate flight hotel room breakfast menu coffee tea price sale "
          "open closed street avenue road city center museum library school hospital pharmacy bank "
          "Monday Friday January March July October London Paris Berlin Tokyo Express Limited Group "
          "quality control warning caution exit entrance push pull parking only staff name phone email "
          "model version serial item quantity unit discount subtotal cash change thank you welcome").split()


def _text_string(rng: np.random.Generator) -> str:
    k = rng.integers(0, 7)
    if k == 0:
        return f"{rng.integers(1, 31):02d}/{rng.integers(1, 13):02d}/{rng.integers(1990, 2030)}"
    if k == 1:
        return f"${rng.integers(1, 999)}.{rng.integers(0, 100):02d}"
    if k == 2:
        return f"No.{rng.integers(100, 99999)}"
    if k == 3:
        return f"{rng.choice(_WORDS).upper()} {rng.integers(1, 500)}"
    words = [str(rng.choice(_WORDS)) for _ in range(int(rng.integers(1, 4)))]
    if rng.random() < 0.3:
        words[0] = words[0].capitalize()
    return " ".join(words)


def _render_line(rng: np.random.Generator, text: str | None = None, size: int | None = None):
    """A cropped text-line image (PIL RGB): dark text on a light background,
    sometimes inverted, with mild noise and blur."""
    from PIL import Image, ImageDraw, ImageFilter
    text = text or _text_string(rng)
    size = size or int(rng.integers(26, 44))
    font = _font(size)
    x0, y0, x1, y1 = font.getbbox(text)
    pad_x, pad_y = int(rng.integers(4, 14)), int(rng.integers(3, 10))
    w, h = x1 - x0 + 2 * pad_x, y1 - y0 + 2 * pad_y
    bg = tuple(int(v) for v in rng.integers(185, 256, 3))
    fg = tuple(int(v) for v in rng.integers(0, 90, 3))
    if rng.random() < 0.15:
        bg, fg = fg, bg
    img = Image.new("RGB", (w, h), bg)
    ImageDraw.Draw(img).text((pad_x - x0, pad_y - y0), text, font=font, fill=fg)
    if rng.random() < 0.4:
        img = img.filter(ImageFilter.GaussianBlur(float(rng.uniform(0.3, 0.9))))
    a = np.asarray(img).astype(np.float32)
    a += rng.normal(0, rng.uniform(1, 6), a.shape).astype(np.float32)
    return Image.fromarray(np.clip(a, 0, 255).astype(np.uint8)), text


def _doc_image(rng: np.random.Generator, w: int, h: int):
    """A synthetic document/photo of a page: text lines of varied sizes, a table
    rule or two, a coloured block, noise."""
    from PIL import Image, ImageDraw
    bg = np.array(rng.integers(200, 256, 3), np.float32)
    grad = np.linspace(0, rng.uniform(-25, 10), h, dtype=np.float32)[:, None, None]
    base = np.clip(bg[None, None, :] + grad + np.zeros((h, w, 3), np.float32), 0, 255)
    img = Image.fromarray(base.astype(np.uint8))
    d = ImageDraw.Draw(img)
    if rng.random() < 0.5:  # a coloured logo/photo block
        bx, by = int(rng.integers(0, w // 2)), int(rng.integers(0, h // 2))
        d.rectangle([bx, by, bx + int(rng.integers(30, w // 3)), by + int(rng.integers(20, h // 4))],
                    fill=tuple(int(v) for v in rng.integers(0, 256, 3)))
    y = int(rng.integers(4, 20))
    while y < h - 12:
        size = int(rng.integers(12, 34))
        font = _font(size)
        x = int(rng.integers(4, max(5, w // 4)))
        text = " ".join(_text_string(rng) for _ in range(int(rng.integers(1, 4))))
        fg = tuple(int(v) for v in rng.integers(0, 100, 3))
        d.text((x, y), text, font=font, fill=fg)
        if rng.random() < 0.15:
            d.line([(4, y + size + 3), (w - 4, y + size + 3)], fill=(60, 60, 60), width=1)
        y += size + int(rng.integers(6, 30))
    a = np.asarray(img).astype(np.float32) + rng.normal(0, 3, (h, w, 3)).astype(np.float32)
    return Image.fromarray(np.clip(a, 0, 255).astype(np.uint8))


def _imagenet_norm(a: np.ndarray) -> np.ndarray:
    mean = np.array([0.485, 0.456, 0.406], np.float32)
    std = np.array([0.229, 0.224, 0.225], np.float32)
    return ((a.astype(np.float32) / 255.0 - mean) / std).transpose(2, 0, 1)[None].astype(np.float32)


def _pad_line(img, height: int, max_w: int, mean=0.5, std=0.5, channels=3):
    from PIL import Image
    w, h = img.size
    nw = int(min(max_w, math.ceil(height * w / h)))
    img = img.resize((nw, height), Image.BILINEAR)
    a = np.asarray(img.convert("RGB" if channels == 3 else "L")).astype(np.float32) / 255.0
    a = (a - mean) / std
    if a.ndim == 2:
        a = a[:, :, None]
    out = np.zeros((channels, height, max_w), np.float32)
    out[:, :, :nw] = a.transpose(2, 0, 1)
    return out[None]


def _layout_page(rng: np.random.Generator, w: int = 608, h: int = 800):
    """A synthetic document page with layout structure: header, title,
    paragraphs, a figure with caption, a ruled table with caption, footer."""
    from PIL import Image, ImageDraw
    img = Image.new("RGB", (w, h), tuple(int(v) for v in rng.integers(235, 256, 3)))
    d = ImageDraw.Draw(img)
    ink = tuple(int(v) for v in rng.integers(0, 60, 3))
    margin = int(rng.integers(30, 60))
    y = int(rng.integers(12, 24))
    small = _font(int(rng.integers(10, 13)))
    d.text((margin, y), " ".join(_text_string(rng) for _ in range(3)), font=small, fill=(90, 90, 90))  # header
    y += 30
    d.text((margin, y), _text_string(rng).title() + " " + _text_string(rng).title(),
           font=_font(int(rng.integers(22, 32))), fill=ink)  # title
    y += 50
    body = _font(int(rng.integers(11, 15)))
    while y < h - 90:
        kind = rng.random()
        if kind < 0.5:  # paragraph
            for _ in range(int(rng.integers(3, 9))):
                if y > h - 90:
                    break
                line = " ".join(str(rng.choice(_WORDS)) for _ in range(int(rng.integers(6, 12))))
                d.text((margin, y), line, font=body, fill=ink)
                y += int(body.size * 1.5)
            y += int(rng.integers(8, 20))
        elif kind < 0.75:  # figure + caption
            fh = int(rng.integers(80, 200))
            if y + fh > h - 90:
                break
            fw = int(rng.integers((w - 2 * margin) // 2, w - 2 * margin))
            x0 = (w - fw) // 2
            a = rng.integers(0, 256, (4, 4, 3)).astype(np.uint8)
            fig = Image.fromarray(a).resize((fw, fh), Image.BICUBIC)
            img.paste(fig, (x0, y))
            y += fh + 6
            d.text((x0, y), "Figure " + str(rng.integers(1, 9)) + ": " + _text_string(rng), font=small, fill=ink)
            y += 30
        else:  # table + caption
            rows, cols = int(rng.integers(3, 8)), int(rng.integers(2, 6))
            rh = body.size + 8
            if y + rows * rh + 30 > h - 90:
                break
            d.text((margin, y), "Table " + str(rng.integers(1, 9)) + ": " + _text_string(rng), font=small, fill=ink)
            y += 20
            tw = w - 2 * margin
            for r in range(rows + 1):
                d.line([(margin, y + r * rh), (margin + tw, y + r * rh)], fill=ink, width=1)
            for c in range(cols + 1):
                d.line([(margin + c * tw // cols, y), (margin + c * tw // cols, y + rows * rh)], fill=ink, width=1)
            for r in range(rows):
                for c in range(cols):
                    d.text((margin + c * tw // cols + 4, y + r * rh + 3), _text_string(rng)[:12], font=body, fill=ink)
            y += rows * rh + 20
    d.text((w // 2 - 10, h - 30), str(rng.integers(1, 300)), font=small, fill=(90, 90, 90))  # footer / page number
    a = np.asarray(img).astype(np.float32) + rng.normal(0, 2, (h, w, 3)).astype(np.float32)
    return Image.fromarray(np.clip(a, 0, 255).astype(np.uint8))


_CAPTCHA_CHARS = "abcdefghijkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789"


def _captcha(rng, w=160, h=60, nchar=None, size=(30, 42)):
    from PIL import Image, ImageDraw, ImageFilter
    nchar = nchar or int(rng.integers(4, 7))
    text = "".join(rng.choice(list(_CAPTCHA_CHARS), nchar))
    bg = tuple(int(v) for v in rng.integers(190, 256, 3))
    img = Image.new("RGB", (w, h), bg)
    d = ImageDraw.Draw(img)
    for _ in range(int(rng.integers(30, 120))):  # speckle
        x, y = int(rng.integers(0, w)), int(rng.integers(0, h))
        d.point((x, y), fill=tuple(int(v) for v in rng.integers(0, 256, 3)))
    step = (w - 10) / nchar
    for k, ch in enumerate(text):
        fs = int(rng.integers(*size))
        glyph = Image.new("RGBA", (fs + 10, fs + 14), (0, 0, 0, 0))
        ImageDraw.Draw(glyph).text((4, 2), ch, font=_font(fs),
                                   fill=tuple(int(v) for v in rng.integers(0, 150, 3)) + (255,))
        glyph = glyph.rotate(float(rng.uniform(-25, 25)), resample=Image.BICUBIC, expand=True)
        x = int(5 + k * step + rng.uniform(-3, 3))
        y = int((h - glyph.size[1]) / 2 + rng.uniform(-5, 5))
        img.paste(glyph, (x, y), glyph)
    for _ in range(int(rng.integers(1, 4))):  # interference lines
        pts = [(int(rng.integers(0, w)), int(rng.integers(0, h))) for _ in range(2)]
        d.line(pts, fill=tuple(int(v) for v in rng.integers(0, 200, 3)), width=int(rng.integers(1, 3)))
    if rng.random() < 0.3:
        img = img.filter(ImageFilter.GaussianBlur(0.6))
    return img, text


def _letterbox(img, size, fill):
    from PIL import Image
    r = min(size / img.size[0], size / img.size[1])
    nw, nh = int(img.size[0] * r), int(img.size[1] * r)
    canvas = Image.new("RGB", (size, size), fill)
    canvas.paste(img.resize((nw, nh), Image.BILINEAR), (0, 0))
    return canvas, r


def _click_captcha(rng, w=344, h=344):
    """A 'click the characters' captcha: textured photo-like background with 3-5
    large glyphs."""
    from PIL import Image, ImageDraw
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    base = np.zeros((h, w, 3), np.float32)
    for c in range(3):
        fx, fy, ph = rng.uniform(0.005, 0.03), rng.uniform(0.005, 0.03), rng.uniform(0, 6.28)
        base[..., c] = 128 + 70 * np.sin(xx * fx + yy * fy + ph) + rng.uniform(-40, 40)
    base += rng.normal(0, 8, base.shape)
    img = Image.fromarray(np.clip(base, 0, 255).astype(np.uint8))
    d = ImageDraw.Draw(img)
    for _ in range(int(rng.integers(3, 9))):  # background blobs
        x, y, r = int(rng.integers(0, w)), int(rng.integers(0, h)), int(rng.integers(10, 60))
        d.ellipse([x - r, y - r, x + r, y + r], fill=tuple(int(v) for v in rng.integers(0, 256, 3)))
    for _ in range(int(rng.integers(3, 6))):
        ch = str(rng.choice(list(_CAPTCHA_CHARS)))
        fs = int(rng.integers(34, 56))
        glyph = Image.new("RGBA", (fs + 16, fs + 20), (0, 0, 0, 0))
        col = tuple(int(v) for v in rng.integers(0, 256, 3))
        ImageDraw.Draw(glyph).text((6, 4), ch, font=_font(fs), fill=col + (255,), stroke_width=2,
                                   stroke_fill=(255 - col[0], 255 - col[1], 255 - col[2], 255))
        glyph = glyph.rotate(float(rng.uniform(-35, 35)), resample=Image.BICUBIC, expand=True)
        img.paste(glyph, (int(rng.integers(0, w - glyph.size[0])), int(rng.integers(0, h - glyph.size[1]))), glyph)
    return img


def _portrait(rng, w, h):
    """A painted head-and-shoulders portrait: shaded skin, hair, eyes with iris
    and brows, nose shadow, lips, neck and clothed shoulders."""
    from PIL import Image, ImageDraw, ImageFilter
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    bg1, bg2 = rng.integers(30, 230, 3), rng.integers(30, 230, 3)
    t = (yy / h)[..., None]
    a = bg1 * (1 - t) + bg2 * t + rng.normal(0, 4, (h, w, 3))
    skins = np.array([(255, 219, 172), (241, 194, 125), (224, 172, 105), (198, 134, 66), (141, 85, 36), (92, 59, 36)],
                     np.float32)
    skin = skins[int(rng.integers(0, len(skins)))] * rng.uniform(0.9, 1.05)
    s = min(w, h) * rng.uniform(0.22, 0.36)      # face half-height
    cx, cy = w * rng.uniform(0.35, 0.65), h * rng.uniform(0.35, 0.5)
    rx, ry = s * 0.78, s
    cloth = rng.integers(0, 256, 3).astype(np.float32)
    # shoulders / torso
    sh = (((xx - cx) / (s * 2.2)) ** 2 + ((yy - (cy + 2.6 * s)) / (s * 1.3)) ** 2) < 1
    a[sh] = cloth * (0.8 + 0.2 * ((yy[sh] - cy) / h))[:, None]
    # neck
    nk = (np.abs(xx - cx) < 0.38 * rx) & (yy > cy) & (yy < cy + 1.6 * s)
    a[nk] = skin * 0.8
    # hair behind the head
    hair = rng.integers(10, 140, 3).astype(np.float32) * (1 if rng.random() < .8 else 1.6)
    hb = (((xx - cx) / (rx * 1.15)) ** 2 + ((yy - cy + 0.15 * s) / (ry * 1.12)) ** 2) < 1
    long_hair = rng.random() < 0.5
    if long_hair:
        hb |= (np.abs(xx - cx) < rx * 1.15) & (yy > cy) & (yy < cy + 1.4 * s)
    a[hb] = hair
    # face with directional shading
    fm = (((xx - cx) / rx) ** 2 + ((yy - cy) / ry) ** 2) < 1
    lx = rng.uniform(-0.6, 0.6)
    shade = 1.0 - 0.18 * (((xx - cx) / rx) * lx + ((yy - cy) / ry) * 0.3) - 0.12 * (((xx - cx) / rx) ** 2)
    a[fm] = skin * shade[fm][:, None]
    # fringe
    fr = fm & (yy < cy - ry * rng.uniform(0.45, 0.7)) & (rng.random() < 0.8)
    a[fr] = hair
    img = Image.fromarray(np.clip(a, 0, 255).astype(np.uint8))
    d = ImageDraw.Draw(img)
    ey = cy - 0.12 * s
    iris = tuple(int(v) for v in rng.integers(20, 140, 3))
    for ex in (cx - 0.36 * rx, cx + 0.36 * rx):
        ew, eh = 0.2 * rx, 0.09 * s
        d.ellipse([ex - ew, ey - eh, ex + ew, ey + eh], fill=(245, 245, 240))
        ir = eh * 0.95
        d.ellipse([ex - ir, ey - ir, ex + ir, ey + ir], fill=iris)
        d.ellipse([ex - ir / 2, ey - ir / 2, ex + ir / 2, ey + ir / 2], fill=(10, 10, 10))
        d.line([ex - ew * 1.1, ey - eh * 2.2, ex + ew * 1.1, ey - eh * 2.4], fill=tuple(int(v * .6) for v in hair),
               width=max(2, int(0.04 * s)))
    dark = tuple(int(v * 0.7) for v in skin)
    d.line([cx, ey + 0.05 * s, cx - 0.05 * s, cy + 0.28 * s], fill=dark, width=max(1, int(0.025 * s)))
    d.ellipse([cx - 0.1 * s, cy + 0.25 * s, cx - 0.04 * s, cy + 0.31 * s], fill=dark)
    d.ellipse([cx + 0.04 * s, cy + 0.25 * s, cx + 0.1 * s, cy + 0.31 * s], fill=dark)
    lip = (int(rng.integers(150, 220)), int(rng.integers(50, 110)), int(rng.integers(60, 110)))
    d.chord([cx - 0.25 * rx, cy + 0.42 * s, cx + 0.25 * rx, cy + 0.62 * s], 0, 180, fill=lip)
    d.chord([cx - 0.25 * rx, cy + 0.36 * s, cx + 0.25 * rx, cy + 0.5 * s], 180, 360,
            fill=tuple(int(v * .85) for v in lip))
    return img.filter(ImageFilter.GaussianBlur(float(rng.uniform(0.5, 1.5))))


def _table_image(rng):
    """A ruled (sometimes only header/bottom-ruled) table: 2-8 rows x 2-5 columns of words, dates,
    prices and codes, an optional shaded header row. Returns (PIL RGB image, rows, cols)."""
    from PIL import Image, ImageDraw
    rows, cols = int(rng.integers(2, 9)), int(rng.integers(2, 6))
    size = int(rng.integers(13, 22))
    font = _font(size)
    texts = [[_text_string(rng) if rng.random() > 0.1 else "" for _ in range(cols)] for _ in range(rows)]
    colw = [max(40, max(font.getbbox(texts[r][c])[2] for r in range(rows)) + int(rng.integers(12, 30)))
            for c in range(cols)]
    rowh = size + int(rng.integers(10, 22))
    m = int(rng.integers(6, 30))
    w, h = sum(colw) + 2 * m, rows * rowh + 2 * m
    img = Image.new("RGB", (w, h), tuple(int(v) for v in rng.integers(225, 256, 3)))
    d = ImageDraw.Draw(img)
    header = rng.random() < 0.6
    if header:
        d.rectangle([m, m, w - m, m + rowh], fill=tuple(int(v) for v in rng.integers(170, 230, 3)))
    line = tuple(int(v) for v in rng.integers(0, 90, 3))
    full_grid = rng.random() < 0.7
    for r in range(rows + 1):
        if full_grid or r in (0, 1, rows):
            d.line([(m, m + r * rowh), (w - m, m + r * rowh)], fill=line, width=1)
    if full_grid:
        x = m
        for c in range(cols + 1):
            d.line([(x, m), (x, h - m)], fill=line, width=1)
            x += colw[c] if c < cols else 0
    for r in range(rows):
        x = m
        for c in range(cols):
            d.text((x + 6, m + r * rowh + (rowh - size) // 2), texts[r][c], font=font,
                   fill=(20, 20, 60) if header and r == 0 else (0, 0, 0))
            x += colw[c]
    a = np.asarray(img).astype(np.float32) + rng.normal(0, 2, (h, w, 3)).astype(np.float32)
    return Image.fromarray(np.clip(a, 0, 255).astype(np.uint8)), rows, cols


def _salient_scene(rng):
    """A photo-like scene with one salient object: a smooth low-contrast textured background and
    either a painted portrait or a saturated outlined blob. Returns (PIL RGB image, object box)."""
    from PIL import Image, ImageDraw, ImageFilter
    w, h = int(rng.integers(280, 640)), int(rng.integers(280, 640))
    base = rng.normal(0, 1, (h // 16 + 2, w // 16 + 2, 3))
    base = (base - base.min()) / max(float(np.ptp(base)), 1e-6) * 60 + rng.uniform(80, 170)
    img = Image.fromarray(base.astype(np.uint8)).resize((w, h), Image.BICUBIC)
    ow, oh = int(w * rng.uniform(0.15, 0.4)), int(h * rng.uniform(0.15, 0.4))
    x0, y0 = int(rng.integers(0, w - ow)), int(rng.integers(0, h - oh))
    if rng.random() < 0.5:
        img.paste(_portrait(rng, ow, oh), (x0, y0))
    else:
        col = [int(v) for v in rng.integers(0, 256, 3)]
        col[int(rng.integers(0, 3))] = 255
        ImageDraw.Draw(img).ellipse([x0, y0, x0 + ow, y0 + oh], fill=tuple(col), outline=(0, 0, 0), width=3)
    return img.filter(ImageFilter.GaussianBlur(0.5)), (x0, y0, x0 + ow, y0 + oh)
