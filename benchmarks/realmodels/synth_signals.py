"""Synthetic non-image inputs: speech-like audio, files for Magika (and their byte features), tokenised sentences."""
from __future__ import annotations

import gzip
import io
import json
import tarfile
import zipfile

import numpy as np

from .synth_images import _WORDS

# ---------------------------------------------------------------------------
# speech-like audio (pure numpy)
# ---------------------------------------------------------------------------

_VOWELS = ((730, 1090, 2440), (530, 1840, 2480), (270, 2290, 3010), (570, 840, 2410), (300, 870, 2240),
           (660, 1720, 2410), (490, 1350, 1690), (440, 1020, 2240))


def _speech_like(rng: np.random.Generator, seconds: float, sr: int = 16000) -> np.ndarray:
    """Speech-like audio in [-1, 1]: voiced syllables (harmonic source with a
    wandering pitch, shaped by vowel formants, syllabic envelope) with noise
    consonants, separated by pauses; pauses hold low background noise, and
    sometimes non-speech (tones, clicks, hum)."""
    n = int(seconds * sr)
    out = np.zeros(n, np.float64)
    t = 0
    while t < n:
        if rng.random() < 0.45:  # an utterance of a few syllables
            f0_base = rng.uniform(85, 230)
            for _ in range(int(rng.integers(2, 9))):
                dur = int(sr * rng.uniform(0.12, 0.32))
                if t + dur >= n:
                    break
                tt = np.arange(dur) / sr
                f0 = f0_base * (1 + 0.08 * np.sin(2 * np.pi * rng.uniform(1, 4) * tt + rng.uniform(0, 6))
                                + rng.uniform(-0.1, 0.1) * tt / tt[-1])
                phase = 2 * np.pi * np.cumsum(f0) / sr
                v1, v2 = _VOWELS[int(rng.integers(0, len(_VOWELS)))], _VOWELS[int(rng.integers(0, len(_VOWELS)))]
                mix = np.linspace(0, 1, dur)
                sig = np.zeros(dur)
                for k in range(1, int(4000 / f0_base)):
                    fk = k * f0
                    amp = np.zeros(dur)
                    for (a1, b1), bw in zip(zip(v1, v2), (90, 120, 160)):
                        fc = a1 * (1 - mix) + b1 * mix
                        amp += np.exp(-0.5 * ((fk - fc) / bw) ** 2)
                    amp = amp / k ** 0.6 + 0.02 / k
                    sig += amp * np.sin(k * phase)
                env = np.sin(np.pi * np.linspace(0, 1, dur)) ** 0.6
                sig *= env * rng.uniform(0.15, 0.5) / max(np.abs(sig).max(), 1e-9)
                if rng.random() < 0.5:  # fricative / plosive before the vowel
                    nd = int(sr * rng.uniform(0.03, 0.09))
                    noise = rng.normal(0, 1, nd)
                    spec = np.fft.rfft(noise)
                    f = np.fft.rfftfreq(nd, 1 / sr)
                    lo = rng.uniform(1500, 4000)
                    spec *= (f > lo) & (f < lo + rng.uniform(1500, 4000))
                    noise = np.fft.irfft(spec, nd)
                    noise *= rng.uniform(0.03, 0.15) / max(np.abs(noise).max(), 1e-9)
                    sig[:nd] += noise * np.hanning(nd)
                out[t:t + dur] += sig
                t += dur + int(sr * rng.uniform(0.0, 0.06))
        else:  # pause / non-speech
            dur = min(int(sr * rng.uniform(0.3, 1.5)), n - t)
            tt = np.arange(dur) / sr
            kind = rng.integers(0, 4)
            if kind == 1:
                out[t:t + dur] += 0.1 * np.sin(2 * np.pi * rng.uniform(400, 2000) * tt)
            elif kind == 2:
                out[t:t + dur] += 0.05 * np.sin(2 * np.pi * 50 * tt) + 0.03 * np.sin(2 * np.pi * 150 * tt)
            elif kind == 3:
                for _ in range(int(rng.integers(1, 5))):
                    p = int(rng.integers(0, max(1, dur - 200)))
                    out[t + p:t + p + 200] += rng.normal(0, 0.2, min(200, dur - p))
            t += dur
    out += rng.normal(0, rng.uniform(0.001, 0.01), n)
    return np.clip(out, -1, 1).astype(np.float32)


# ---------------------------------------------------------------------------
# files of many types, as Magika sees them (first/last 1024 bytes)
# ---------------------------------------------------------------------------

def _magika_file(rng) -> tuple[str, bytes]:
    from PIL import Image
    k = int(rng.integers(0, 20))
    words = [str(rng.choice(_WORDS)).lower() for _ in range(400)]

    def idn():
        return str(rng.choice(words))

    if k == 0:
        lines = ["import os", "import sys", ""]
        for f in range(int(rng.integers(3, 12))):
            lines += [f"def {idn()}_{f}({idn()}, {idn()}=None):", f"    \"\"\"{' '.join(words[f:f + 8])}.\"\"\"",
                      f"    if {idn()} is None:", f"        return {rng.integers(0, 100)}",
                      f"    return [{idn()} for {idn()} in range({rng.integers(1, 50)})]", ""]
        return "python", "\n".join(lines).encode()
    if k == 1:
        obj = {idn(): {idn(): int(rng.integers(0, 1000)), idn(): [idn() for _ in range(3)],
                       "ok": bool(rng.random() < .5)}
               for _ in range(int(rng.integers(3, 30)))}
        return "json", json.dumps(obj, indent=int(rng.integers(0, 4)) or None).encode()
    if k == 2:
        cols = [idn() for _ in range(int(rng.integers(3, 8)))]
        rows = [",".join(cols)] + [",".join(str(rng.integers(0, 10000)) if rng.random() < .6 else idn() for _ in cols)
                                   for _ in range(int(rng.integers(10, 200)))]
        return "csv", "\n".join(rows).encode()
    if k == 3:
        body = "".join(f"<p class=\"{idn()}\">{' '.join(words[i:i + 12])}</p>\n" for i in range(0, 200, 12))
        return "html", (f"<!DOCTYPE html>\n<html>\n<head><title>{idn()}</title></head>\n"
                        f"<body>\n{body}</body>\n</html>\n").encode()
    if k == 4:
        items = "".join(f"  <{idn()} id=\"{rng.integers(0, 999)}\">{idn()}</{'x'}>\n" for _ in range(30))
        return "xml", f"<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<root>\n{items}</root>\n".encode()
    if k == 5:
        secs = "".join(f"## {idn().title()}\n\n{' '.join(words[i:i + 30])}\n\n- {idn()}\n- {idn()}\n\n"
                       for i in range(0, 300, 30))
        return "markdown", f"# {idn().title()} {idn()}\n\n{secs}".encode()
    if k == 6:
        fns = "".join(f"static int {idn()}_{i}(int a, char *b) {{\n    int {idn()} = a * {rng.integers(1, 9)};\n"
                      f"    if (b == NULL) return -1;\n    return strlen(b) + a;\n}}\n\n" for i in range(8))
        return "c", f"#include <stdio.h>\n#include <string.h>\n\n{fns}int main(void) {{\n    return 0;\n}}\n".encode()
    if k == 7:
        cmds = "".join(f"if [ -f \"$HOME/{idn()}\" ]; then\n  echo \"{idn()}\"\n  cp -r {idn()} /tmp/{idn()}\nfi\n"
                       for _ in range(8))
        return "shell", f"#!/bin/bash\nset -euo pipefail\n\n{cmds}".encode()
    if k == 8:
        secs = "".join(f"[{idn()}]\n{idn()} = {rng.integers(0, 100)}\n{idn()} = {idn()}\n\n" for _ in range(8))
        return "ini", secs.encode()
    if k == 9:
        rows = "".join(f"INSERT INTO {idn()} ({idn()}, {idn()}) VALUES ({rng.integers(0, 999)}, '{idn()}');\n"
                       for _ in range(30))
        return "sql", f"CREATE TABLE {idn()} (id INTEGER PRIMARY KEY, name TEXT);\n{rows}".encode()
    if k == 10:
        rules = "".join(f".{idn()} {{\n  color: #{rng.integers(0, 0xffffff):06x};\n"
                        f"  margin: {rng.integers(0, 40)}px;\n}}\n\n" for _ in range(12))
        return "css", rules.encode()
    if k in (11, 12, 13, 14):
        w, h = int(rng.integers(16, 200)), int(rng.integers(16, 200))
        a = (rng.random((h, w, 3)) * 255).astype(np.uint8) if rng.random() < .3 else \
            np.tile(rng.integers(0, 256, (1, 1, 3), dtype=np.uint8), (h, w, 1))
        buf = io.BytesIO()
        fmt = {11: "PNG", 12: "JPEG", 13: "GIF", 14: "BMP"}[k]
        Image.fromarray(a).save(buf, format=fmt)
        return fmt.lower(), buf.getvalue()
    if k == 15:
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
            for i in range(int(rng.integers(1, 5))):
                z.writestr(f"{idn()}_{i}.txt", " ".join(words))
        return "zip", buf.getvalue()
    if k == 16:
        return "gzip", gzip.compress(" ".join(words).encode(), mtime=0)
    if k == 17:
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w") as tf:
            data = " ".join(words).encode()
            ti = tarfile.TarInfo(f"{idn()}.txt")
            ti.size = len(data)
            tf.addfile(ti, io.BytesIO(data))
        return "tar", buf.getvalue()
    if k == 18:
        return "randombytes", rng.integers(0, 256, int(rng.integers(200, 6000)), dtype=np.uint8).tobytes()
    text = " ".join(words[: int(rng.integers(50, 400))]).capitalize() + ".\n"
    return "txt", text.encode()


def _magika_features(content: bytes, beg_size=1024, end_size=1024, block_size=4096, pad=256) -> np.ndarray:
    n = min(block_size, len(content))
    beg = content[:n]
    end = content[len(content) - n:]
    if len(content) <= block_size:
        beg, end = beg.strip(), end.strip()
    else:
        beg, end = beg.lstrip(), end.rstrip()
    b = list(beg[:beg_size]) + [pad] * max(0, beg_size - len(beg))
    e = [pad] * max(0, end_size - len(end)) + list(end[-end_size:] if end else b"")
    return np.array(b + e, np.int32)


# ---------------------------------------------------------------------------
# English sentences as bert-base-uncased token ids
# ---------------------------------------------------------------------------

# word -> id in the bert-base-uncased WordPiece vocab (the vocab.txt shipped by
# all-MiniLM/paraphrase-MiniLM; every word below is a single token).
_VOCAB = {w: int(i) for w, i in (p.split(":") for p in """
a:1037 after:2044 airport:3199 although:2348 an:2019 ancient:3418 and:1998 announced:2623 any:2151 at:2012
bad:2919 beach:3509 because:2138 before:2077 bicycle:10165 birthday:5798 blue:2630 bought:4149 boxes:8378
bread:7852 breakfast:6350 bridge:2958 broken:3714 brother:2567 budget:5166 but:2021 buy:4965 cake:9850
can:2064 carried:3344 cat:4937 celebrated:6334 cheap:10036 children:2336 chocolate:7967 city:2103 closed:2701
coffee:4157 company:2194 cooked:12984 cost:3465 cup:2452 december:2285 delivered:5359 described:2649
designed:2881 discovered:3603 do:2079 does:2515 dog:3899 dogs:6077 during:2076 eat:4521 election:2602
engineer:3992 everyone:3071 experts:8519 explained:4541 farmer:7500 first:2034 fish:3869 fisherman:19949
flights:7599 football:2374 for:2005 found:2179 fresh:4840 garden:3871 government:2231 grandmother:7133
happy:3407 health:2740 heavy:3082 help:2393 high:2152 his:2010 home:2188 hospital:2902 how:2129 huge:4121
i:1045 ignored:6439 in:1999 is:2003 it:2009 kitchen:3829 language:2653 laptop:12191 last:2197 learn:4553
library:3075 like:2066 london:2414 lost:2439 manager:3208 map:4949 market:3006 match:2674 measured:7594
meeting:3116 monday:6928 mountain:3137 much:2172 museum:2688 music:2189 my:2026 near:2379 neighbor:11429
new:2047 night:2305 nobody:6343 noticed:4384 of:1997 old:2214 on:2006 open:2330 orchestra:4032 our:2256
painted:4993 paintings:5265 password:20786 photographed:16164 pilot:4405 played:2209 price:3976
programming:4730 quarterly:12174 raining:24057 reading:3752 red:2417 repaired:13671 report:3189 reset:25141
results:3463 river:2314 road:2346 robot:8957 school:2082 scientist:7155 several:2195 should:2323 signal:4742
sky:3712 small:2235 so:2061 software:4007 sold:2853 storm:4040 strange:4326 stray:15926 students:2493
summer:2621 surprised:4527 team:2136 the:1996 then:2059 this:2023 three:2093 tickets:9735 time:2051
tomorrow:4826 too:2205 trail:4446 train:3345 under:2104 update:10651 vaccine:17404 violin:6710 visited:4716
was:2001 weather:4633 went:2253 what:2054 when:2043 where:2073 which:2029 while:2096 who:2040 why:2339
window:3332 without:2302 woman:2450 won:2180 wooden:4799 world:2088 yesterday:7483 young:2402 your:2115
""".split())}  # noqa: SIM905


_SUBJECTS = ("the cat", "a young woman", "my neighbor", "the old fisherman", "our team", "the government",
             "a small robot", "the children", "this company", "the scientist", "his grandmother", "the orchestra",
             "a stray dog", "the new manager", "several students", "the pilot", "an engineer", "the museum",
             "the farmer", "my brother")
_VERBS = ("is reading", "bought", "painted", "repaired", "discovered", "announced", "cooked", "visited",
          "described", "ignored", "celebrated", "measured", "sold", "carried", "photographed", "designed", "lost",
          "found", "explained", "delivered")
_OBJECTS = ("a red bicycle", "the quarterly report", "fresh bread", "an ancient map", "the broken window",
            "a strange signal", "the budget", "three paintings", "the wooden bridge", "a cup of coffee",
            "the election results", "a new vaccine", "the football match", "heavy boxes", "the mountain trail",
            "a birthday cake", "the software update", "cheap tickets", "the violin", "a huge fish")
_PLACES = ("in the kitchen", "near the river", "at the airport", "during the storm", "before breakfast",
           "in london", "on the train", "after the meeting", "at the market", "in the garden", "under the bridge",
           "at night", "in the hospital", "on the beach", "last summer", "in the library", "at school",
           "yesterday", "in december", "on monday")
_EXTRAS = ("because it was raining", "and everyone was happy", "although nobody noticed",
           "but the price was too high", "while the music played", "so the city closed the road",
           "and then went home", "which surprised the experts", "for the first time", "without any help")
_QUESTIONS = ("how do i reset my password", "what is the weather like tomorrow", "where can i buy cheap flights",
              "why is the sky blue", "who won the world cup", "when does the museum open",
              "how much does a new laptop cost", "which programming language should i learn",
              "is coffee bad for your health", "can dogs eat chocolate")
_CLS, _SEP, _PERIOD, _QMARK, _COMMA = 101, 102, 1012, 1029, 1010


def _sentence(rng) -> list[int]:
    if rng.random() < 0.2:
        words = str(rng.choice(_QUESTIONS)).split()
        ids = [_VOCAB.get(w, 100) for w in words] + [_QMARK]
    else:
        parts = [rng.choice(_SUBJECTS), rng.choice(_VERBS), rng.choice(_OBJECTS)]
        if rng.random() < 0.7:
            parts.append(rng.choice(_PLACES))
        ids = [_VOCAB.get(w, 100) for w in " ".join(map(str, parts)).split()]
        if rng.random() < 0.4:
            ids += [_COMMA] + [_VOCAB.get(w, 100) for w in str(rng.choice(_EXTRAS)).split()]
        ids.append(_PERIOD)
    return ids


# ---------------------------------------------------------------------------
# noise for speech-quality feeds, and a Kaldi-style fbank (as kaldi-native-fbank computes it)
# ---------------------------------------------------------------------------

def _noise(rng: np.random.Generator, n: int, kind: int, sr: int = 16000) -> np.ndarray:
    """Unit-variance noise: 0 white, 1 pink-ish (1/sqrt(f)), 2 mains hum with harmonics,
    3 babble (three speech-like voices)."""
    if kind == 1:
        spec = np.fft.rfft(rng.normal(0, 1, n))
        spec /= np.sqrt(np.arange(1, len(spec) + 1))
        w = np.fft.irfft(spec, n)
    elif kind == 2:
        t = np.arange(n) / sr
        w = sum(np.sin(2 * np.pi * 50 * k * t + rng.uniform(0, 6)) / k for k in range(1, 8))
    elif kind == 3:
        w = sum(_speech_like(rng, n / sr + 0.01)[:n].astype(np.float64) for _ in range(3))
    else:
        w = rng.normal(0, 1, n)
    return (w / (np.std(w) + 1e-12)).astype(np.float64)


def _mel_banks(n_fft: int = 512, n_mels: int = 80, sr: int = 16000, low: float = 20.0) -> np.ndarray:
    """Kaldi's triangular mel filters (mel = 1127 ln(1 + f/700)) over the first n_fft/2 FFT bins."""
    def mel(f):
        return 1127.0 * np.log(1 + np.asarray(f) / 700.0)
    lo, hi = mel(low), mel(sr / 2)
    step = (hi - lo) / (n_mels + 1)
    fm = mel(np.arange(n_fft // 2) * sr / n_fft)
    w = np.zeros((n_mels, n_fft // 2 + 1))
    for m in range(n_mels):
        left, centre, right = lo + m * step, lo + (m + 1) * step, lo + (m + 2) * step
        w[m, :n_fft // 2] = np.maximum(0, np.minimum((fm - left) / (centre - left), (right - fm) / (right - centre)))
    return w


def _kaldi_fbank(audio: np.ndarray, n_mels: int = 80, sr: int = 16000) -> np.ndarray:
    """log mel filterbank as kaldi-native-fbank with FunASR's options: 16-bit PCM scale, 25 ms frames
    every 10 ms (snip_edges), DC removal, pre-emphasis 0.97, Hamming window, 512-point power
    spectrum, 80 mel bins from 20 Hz, log floored at float32 eps, no dither."""
    x = np.asarray(audio, np.float64) * 32768.0
    fl, fs = int(0.025 * sr), int(0.010 * sr)
    n = 1 + (len(x) - fl) // fs
    frames = x[np.arange(fl)[None, :] + fs * np.arange(n)[:, None]]
    frames = frames - frames.mean(1, keepdims=True)
    frames = np.concatenate([frames[:, :1] * (1 - 0.97), frames[:, 1:] - 0.97 * frames[:, :-1]], 1)
    frames *= np.hamming(fl)[None, :]
    power = np.abs(np.fft.rfft(frames, 512)) ** 2
    return np.log(np.maximum(power @ _mel_banks(512, n_mels, sr).T, np.finfo(np.float32).eps)).astype(np.float32)
