"""Seeded mutations of valid files, for the fuzz test: structured (a JSON value replaced, dropped, retyped,
nested; an array's dtype, shape or values changed) and raw (bytes cut, flipped, made invalid UTF-8)."""
from __future__ import annotations

import io
import json
import random

import numpy as np

HOSTILE = ["", " ", "\0", "a\nb", "\r", "\u2028", "\ud7ff", "../../etc/passwd", "/etc/passwd", "x" * 5000, "'\"`$(id)", "nan", "inf",
           "-inf", "1e999", "é", "\x1b[31m", "op:Mul", "re:(", "glob:[", "*"]


def random_value(rng: random.Random, depth: int = 0):
    kind = rng.choice(["int", "neg", "huge", "float", "str", "bool", "null", "list", "dict", "deep"] if depth < 3 else ["int", "str", "null"])
    if kind == "int":
        return rng.choice([0, 1, 2, 7, 64])
    if kind == "neg":
        return -rng.choice([1, 2, 10**6])
    if kind == "huge":
        return rng.choice([2**63, 10**30, 2**31])
    if kind == "float":
        return rng.choice([0.5, -0.0, 1e308, -1e-320, 3.14])
    if kind == "str":
        return rng.choice(HOSTILE)
    if kind == "bool":
        return rng.choice([True, False])
    if kind == "null":
        return None
    if kind == "list":
        return [random_value(rng, depth + 1) for _ in range(rng.randint(0, 3))]
    if kind == "dict":
        return {rng.choice(HOSTILE + ["k", "Name", "pins"]): random_value(rng, depth + 1) for _ in range(rng.randint(0, 3))}
    v = 0
    for _ in range(rng.choice([20, 60])):
        v = [v]
    return v


def _paths(value, here=()):
    yield here
    if isinstance(value, dict):
        for k, v in value.items():
            yield from _paths(v, here + (k,))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _paths(v, here + (i,))


def _get(value, path):
    for p in path:
        value = value[p]
    return value


def mutate_json(value, rng: random.Random):
    """One structural change at a random place of a copy of ``value``."""
    value = json.loads(json.dumps(value))
    paths = list(_paths(value))
    path = rng.choice(paths)
    op = rng.choice(["replace", "replace", "replace", "drop", "add", "empty", "retype"])
    if not path:
        return random_value(rng) if op != "empty" else {}
    parent, key = _get(value, path[:-1]), path[-1]
    if op == "drop" and isinstance(parent, dict):
        del parent[key]
    elif op == "drop" and isinstance(parent, list):
        parent.pop(key)
    elif op == "add" and isinstance(parent, dict):
        parent[rng.choice(["unknown_field", "Name", "extra"])] = random_value(rng)
    elif op == "add" and isinstance(parent, list):
        parent.append(random_value(rng) if rng.random() < 0.5 else json.loads(json.dumps(parent[key])))
    elif op == "empty":
        parent[key] = [] if isinstance(parent[key], list) else ({} if isinstance(parent[key], dict) else "")
    elif op == "retype":
        old = parent[key]
        parent[key] = str(old) if not isinstance(old, str) else (len(old) if rng.random() < 0.5 else [old])
    else:
        parent[key] = random_value(rng)
    return value


def _typed(old, rng: random.Random):
    if isinstance(old, bool):
        return not old
    if isinstance(old, int):
        return rng.choice([0, -1, -(2**40), 2**62, old + 1, old * 1000])
    if isinstance(old, float):
        return rng.choice([0.0, -1.0, 1e308, -1e308, 5e-324, "nan", "inf", "-inf", old * -1])
    if isinstance(old, str):
        return rng.choice(HOSTILE + ["nan", "inf"])
    if isinstance(old, list):
        return rng.choice([[], old[:1], old + old[:2], old[::-1]])
    if isinstance(old, dict):
        if old and rng.random() < 0.5:
            k = rng.choice(list(old))
            return {**old, rng.choice(HOSTILE): json.loads(json.dumps(old[k]))}
        return {}
    return old


def mutate_json_typed(value, rng: random.Random, changes: int = 4):
    """Changes that keep each value's JSON type (so a schema lets them through to what reads the values)."""
    value = json.loads(json.dumps(value))
    for _ in range(changes):
        path = rng.choice([p for p in _paths(value) if p])
        parent, key = _get(value, path[:-1]), path[-1]
        parent[key] = _typed(parent[key], rng)
    return value


def mutate_bytes(data: bytes, rng: random.Random) -> bytes:
    op = rng.choice(["cut", "flip", "utf8", "bom", "nanlit", "garbage", "empty", "dup", "deep"])
    if op == "deep":  # nesting past what a recursive parser survives
        return b"[" * 100_000 + b"]" * 100_000
    if op == "cut":
        return data[: rng.randrange(max(len(data), 1))]
    if op == "flip" and data:
        b = bytearray(data)
        for _ in range(rng.randint(1, 8)):
            b[rng.randrange(len(b))] = rng.randrange(256)
        return bytes(b)
    if op == "utf8":
        k = rng.randrange(len(data) + 1)
        return data[:k] + rng.choice([b"\xff", b"\xc3\x28", b"\xed\xa0\x80", b"\x00"]) + data[k:]
    if op == "bom":
        return b"\xef\xbb\xbf" + data
    if op == "nanlit":
        return data.replace(b"0", b"NaN", 1) if b"0" in data else b"NaN"
    if op == "garbage":
        return data + b"}{][" + bytes(rng.randrange(256) for _ in range(8))
    if op == "dup":
        return data + data
    return b""


def mutate_file(path, base_value, base_bytes: bytes, rng: random.Random) -> None:
    """Write a mutant of a JSON file: mostly structural, sometimes raw bytes."""
    if rng.random() < 0.7:
        path.write_text(json.dumps(mutate_json(base_value, rng)), encoding="utf-8")
    else:
        path.write_bytes(mutate_bytes(base_bytes, rng))


def random_array(rng: random.Random, like: np.ndarray) -> np.ndarray:
    kind = rng.choice(["shape", "dtype", "values", "empty", "rank", "scalar"])
    if kind == "shape":
        shape = list(like.shape)
        shape[rng.randrange(len(shape))] += rng.choice([-1, 1, 7])
        return np.ones([max(d, 0) for d in shape], like.dtype)
    if kind == "dtype":
        return like.astype(rng.choice([np.float64, np.float16, np.int64, np.int8, np.uint8, np.bool_, np.complex64]))
    if kind == "values":
        out = like.astype(rng.choice([np.float32, np.float64])).copy()
        flat = out.reshape(-1)
        with np.errstate(over="ignore"):  # 1e300 into a float32 array is inf: one more kind of mutant
            flat[rng.randrange(flat.size)] = rng.choice([np.nan, np.inf, -np.inf, 1e300, -1e300, 1e38])
        return out
    if kind == "empty":
        return np.zeros((0,) + like.shape[1:], like.dtype)
    if kind == "rank":
        return like.reshape(-1)
    return np.float32(1.0)


def npy_bytes(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, arr, allow_pickle=False)
    return buf.getvalue()
