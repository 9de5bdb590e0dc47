"""Writes tests/data/sqish_reference.csv: f and its four partials at 708 points,
computed with mpmath at 80 significant digits, the tests' independent check of the
kernels and of sqish_ext.reference.

    python scripts/make_reference_table.py [--check]

The values come from docs/math.md's closed forms and are cross-checked against
mpmath's own numerical derivatives of f; each is written as the float64 nearest to
it (Python's repr). --check writes nothing and exits 1 if the committed table
differs from what this script computes.
"""
import argparse
import csv
import io
import sys
from pathlib import Path

import mpmath

TABLE = Path(__file__).resolve().parent.parent / "tests" / "data" / "sqish_reference.csv"
COLUMNS = ["alpha", "beta", "gamma", "x", "f", "df_dx", "df_dalpha", "df_dbeta", "df_dgamma"]

# (α, β, γ): the default, SiLU, moderate values on both sides of β = 1, α near 1, a
# tiny β, a very sharp gate, a negative γ, the identity (α = 1), and four drawn at random.
SETTINGS = [
    ("0.01", "1.0", "1.0"), ("0.0", "1.0", "0.5"), ("0.25", "0.5", "2.0"), ("0.5", "2.0", "0.3"),
    ("0.9", "0.001", "5.0"), ("0.01", "10.0", "20.0"), ("0.1", "1.0", "-1.0"), ("1.0", "1.0", "1.0"),
    ("0.1854", "0.0048", "2.8366"), ("-0.1138", "0.2579", "0.3954"), ("-0.131", "0.1921", "0.041"),
    ("0.316", "0.0021", "0.0592"),
]
# Zero, tiny, moderate and huge inputs of both signs, then 36 drawn at random.
INPUTS = [
    "0.0", "1e-30", "-1e-30", "1e-08", "-1e-08", "0.5", "-0.5", "1.0", "-1.0", "3.0", "-3.0", "10.0",
    "-10.0", "30.0", "-30.0", "60.0", "-60.0", "100.0", "-100.0", "1000.0", "-1000.0", "10000.0", "-10000.0",
    "-1.207693", "5.229634", "-6.019169", "-4.428177", "2.038932", "7.163343", "1.233647", "-1.653112",
    "7.620082", "-7.254677", "5.735495", "-3.366251", "-5.691919", "-6.115324", "-3.064291", "5.058022",
    "-5.108378", "1.305603", "2.222616", "-2.041639", "0.763911", "-6.995376", "-7.046381", "-4.704661",
    "59.195371", "0.717164", "0.004129", "-87.860732", "-7e-06", "0.178634", "19.699395", "1.229108",
    "-1.5e-05", "4.5e-05", "3.3e-05", "0.016481",
]
DIGITS = 80


def sqish(x, alpha, beta, gamma):
    return alpha * x + (1 - alpha) * x / (1 + beta * mpmath.exp(-2 * gamma * (1 - alpha) * x))


def closed_forms(x, alpha, beta, gamma):
    """f and ∂f/∂x, ∂f/∂α, ∂f/∂β, ∂f/∂γ from docs/math.md, with s = σ(kx − ln β)."""
    k = 2 * gamma * (1 - alpha)
    e = beta * mpmath.exp(-k * x)
    # 1 − s written as e/(1 + e): a subtraction would cancel all 80 digits where s → 1.
    s, sc = 1 / (1 + e), e / (1 + e)
    q = s * sc
    return [
        sqish(x, alpha, beta, gamma),
        alpha + (1 - alpha) * (s + k * x * q),
        x * sc - k * x * x * q,
        -(1 - alpha) * x * q / beta,
        2 * (1 - alpha) ** 2 * x * x * q,
    ]


def numerical_partials(x, alpha, beta, gamma):
    """The four partials as mpmath's numerical derivatives of f itself."""
    point = [x, alpha, beta, gamma]

    def partial(i):
        def along(t):
            moved = list(point)
            moved[i] = t
            return sqish(*moved)

        return mpmath.diff(along, point[i])

    return [partial(i) for i in range(4)]


def rows():
    with mpmath.workdps(DIGITS):
        for setting in SETTINGS:
            # The float64 values the kernels see, exactly.
            alpha, beta, gamma = (mpmath.mpf(float(v)) for v in setting)
            for text in INPUTS:
                x = mpmath.mpf(float(text))
                values = closed_forms(x, alpha, beta, gamma)
                for name, exact, numerical in zip(COLUMNS[5:], values[1:], numerical_partials(x, alpha, beta, gamma)):
                    # Numerical differentiation at 80 digits keeps about 40: far past float64.
                    if abs(exact - numerical) > mpmath.mpf(10) ** -30 * max(1, abs(exact)):
                        raise AssertionError(f"{name} at x={text}, {setting}: closed form {exact}, numerical {numerical}")
                yield [repr(float(v)) for v in (*setting, text)] + [repr(float(v)) for v in values]


def table_text():
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(COLUMNS)
    writer.writerows(rows())
    return out.getvalue()


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="compare with the committed table; write nothing")
    args = parser.parse_args()
    text = table_text()
    if args.check:
        if TABLE.read_text() != text:
            sys.exit(f"{TABLE} differs from what {Path(__file__).name} computes")
        print(f"{TABLE.name}: matches")
        return
    TABLE.write_text(text)
    print(f"wrote {TABLE}")


if __name__ == "__main__":
    main()
