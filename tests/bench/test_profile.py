"""bench/profile.py's reading of py-spy's collapsed stacks."""

from __future__ import annotations

from bench.profile import ROOT, parse_collapsed


def test_shares_count_a_function_once_per_sample_and_merge_its_lines() -> None:
    shipper = ROOT / "shipper"
    text = (
        f"process 12:\"python\";run ({shipper}/main.py:10);on_records ({shipper}/main.py:50);"
        f"encode_line ({shipper}/documents.py:7) 3\n"
        f"run ({shipper}/main.py:10);on_records ({shipper}/main.py:51);on_records ({shipper}/main.py:52) 2\n"
        f"thread 0x1;poll (/usr/lib/python3/zmq/poll.py:9) 5\n"
        "a line py-spy would never write\n"
    )
    shares = parse_collapsed(text)
    assert shares.samples == 10
    # The recursive on_records counts once per sample; line numbers merge; labels are not frames.
    assert shares.inclusive["on_records (shipper/main.py)"] == 5
    assert shares.inclusive["run (shipper/main.py)"] == 5
    assert shares.self_ == {"encode_line (shipper/documents.py)": 3, "on_records (shipper/main.py)": 2,
                            "poll (poll.py)": 5}
