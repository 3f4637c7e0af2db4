"""Request generation: arrival processes, length distributions, prefix hits, seeding, and trace files."""
from __future__ import annotations

import json

import numpy as np
import pytest

from archsim.errors import ConfigError
from archsim.serving.arrivals import FixedRate, Gamma, Poisson, make_arrival
from archsim.serving.lengths import Empirical, Fixed, LogNormal, Uniform, parse_length
from archsim.serving.requests import LengthSampler, generate
from archsim.serving.trace import load_trace


def test_fixed_rate_is_exact():
    times = FixedRate(rate_per_s=4.0).times(np.random.default_rng(0), 2.0)
    assert times.tolist() == [0.0, 0.25, 0.5, 0.75, 1.0, 1.25, 1.5, 1.75]


def test_poisson_rate_and_dispersion():
    # 20,000 expected arrivals: the count's standard deviation is sqrt(20000) = 141 (0.7 %), so 3 % is > 4 sigma;
    # exponential gaps have coefficient of variation 1
    times = Poisson(rate_per_s=100.0).times(np.random.default_rng(1), 200.0)
    assert abs(len(times) - 20_000) < 0.03 * 20_000
    gaps = np.diff(times)
    assert abs(gaps.std() / gaps.mean() - 1.0) < 0.05
    assert np.all(gaps >= 0) and times.max() < 200.0


def test_gamma_is_burstier_with_the_same_rate():
    times = Gamma(rate_per_s=50.0, cv=3.0).times(np.random.default_rng(2), 400.0)
    gaps = np.diff(times)
    assert abs(len(times) / 400.0 - 50.0) < 0.1 * 50.0
    assert abs(gaps.std() / gaps.mean() - 3.0) < 0.3


def test_length_distributions():
    rng = np.random.default_rng(3)
    assert Fixed(tokens=7).sample(rng, 3).tolist() == [7, 7, 7]
    u = Uniform(low=10, high=12).sample(rng, 3000)
    assert set(u.tolist()) == {10, 11, 12}
    ln = LogNormal(median_tokens=500, sigma=0.5, max_tokens=2000).sample(rng, 20_000)
    assert abs(np.median(ln) - 500) < 15 and ln.max() <= 2000 and ln.min() >= 1
    emp = Empirical(values=(3, 5)).sample(rng, 100)
    assert set(emp.tolist()) <= {3, 5}


def test_parse_length_and_errors(tmp_path):
    assert parse_length("128", field="prompt") == Fixed(tokens=128)
    assert parse_length("uniform:1:9", field="prompt") == Uniform(low=1, high=9)
    f = tmp_path / "lens.txt"
    f.write_text("# lengths\n10\n20\n")
    assert parse_length(f"file:{f}", field="prompt") == Empirical(values=(10, 20))
    with pytest.raises(ConfigError, match="prompt"):
        parse_length("uniform:9:1", field="prompt")
    with pytest.raises(ConfigError, match="prompt"):
        parse_length("gauss:3", field="prompt")
    f.write_text("10\nten\n")
    with pytest.raises(ConfigError, match="line 2"):
        Empirical.from_file(f)


def test_make_arrival_errors():
    with pytest.raises(ConfigError, match="arrival.rate"):
        make_arrival("poisson", rate_per_s=0.0)
    with pytest.raises(ConfigError, match="arrival"):
        make_arrival("weibull", rate_per_s=1.0)


def test_same_seed_same_requests_and_prefix_hits():
    lengths = LengthSampler(prompt=Uniform(low=100, high=200), output=Fixed(tokens=5), prefix_hit_rate=0.25)
    a = generate(arrival=Poisson(rate_per_s=10), lengths=lengths, duration_s=20, seed=9)
    b = generate(arrival=Poisson(rate_per_s=10), lengths=lengths, duration_s=20, seed=9)
    c = generate(arrival=Poisson(rate_per_s=10), lengths=lengths, duration_s=20, seed=10)
    assert a == b and a != c
    # cached = floor(0.25 * prompt)
    assert all(r.cached_tokens == (r.prompt_tokens * 25) // 100 for r in a)


def test_trace_csv_and_jsonl(tmp_path):
    csv = tmp_path / "t.csv"
    csv.write_text("arrival_s,prompt_tokens,output_tokens\n0.5,100,10\n0.1,50,5\n")
    reqs = load_trace(csv)
    assert [(r.id, r.arrival_s, r.prompt_tokens, r.output_tokens) for r in reqs] == [(0, 0.1, 50, 5), (1, 0.5, 100, 10)]
    jl = tmp_path / "t.jsonl"
    jl.write_text(json.dumps({"arrival_s": 0, "prompt_tokens": 8, "output_tokens": 2, "cached_tokens": 4}) + "\n")
    assert load_trace(jl)[0].cached_tokens == 4


@pytest.mark.parametrize("body, where", [
    ("arrival_s,prompt_tokens,output_tokens\n0,1,1\n0.2,abc,3\n", "line 3.prompt_tokens"),
    ("arrival_s,prompt_tokens,output_tokens\n-1,1,1\n", "line 2.arrival_s"),
    ("arrival_s,prompt_tokens,output_tokens\n0,0,1\n", "line 2"),
    ("arrival_s,prompt_tokens,output_tokens\n0,1.5,1\n", "line 2.prompt_tokens"),
    ("arrival_s,prompt_tokens\n0,1\n", "line 2.output_tokens"),
    ("arrival_s,prompt_tokens,output_tokens,colour\n0,1,1,red\n", "line 2.colour"),
    ("arrival_s,prompt_tokens,output_tokens\n0,1,1,9\n", "line 2"),
])
def test_bad_csv_rows_name_file_and_line(tmp_path, body, where):
    path = tmp_path / "bad.csv"
    path.write_text(body)
    with pytest.raises(ConfigError) as err:
        load_trace(path)
    assert err.value.file == str(path) and err.value.path == where


def test_bad_jsonl_and_missing_file(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"arrival_s": 0, "prompt_tokens": 1, "output_tokens": 1}\n{oops\n')
    with pytest.raises(ConfigError, match="line 2"):
        load_trace(path)
    with pytest.raises(ConfigError, match="no such file"):
        load_trace(tmp_path / "missing.csv")
