"""hardware/groq_lpu.yaml: the Groq LPU's derived figures, each from the sourced inputs named in the YAML."""
import pytest

from archsim.config.hardware import load_hardware

@pytest.fixture(scope="module")
def groq():
    return load_hardware("groq_lpu")


def test_sram_is_the_main_memory(groq):
    """230 MB (Groq) agrees with TSP-MP's 220 MiB per chip within 0.5%; 80 TB/s; no HBM behind it."""
    main = groq.main_memory
    assert main.capacity_bytes == pytest.approx(220 * 2 ** 20, rel=0.005)
    assert main.bandwidth_bytes_per_s == 80e12
    assert groq.kernel_launch_s == 0.0


def test_c2c_links_are_four_28g_lanes(groq):
    """One C2C link: 4 lanes x 28 Gb/s / 8 bits = 14 GB/s per direction (Linley 2020-11); in a node a card's three
    exposed links (42 GB/s), to the next node one cabled link (14 GB/s)."""
    per_link = 4 * 28e9 / 8
    assert per_link == 14e9
    assert groq.node.scale_up.bandwidth_bytes_per_s == pytest.approx(3 * per_link)
    assert groq.node.scale_out.bandwidth_bytes_per_s == pytest.approx(per_link)
    assert groq.node.chips_per_node == 8


def test_energy_per_flop_is_card_power_over_peak(groq):
    """Upper bounds: 375 W / 188 TFLOPS = 1.99 pJ/FLOP; 375 W / 750 TOPS = 0.50 pJ/op; vector 375 W / 4.608 TFLOPS."""
    tensor, vector = groq.compute["tensor"], groq.compute["vector"]
    assert tensor.energy_j_per_flop["fp16"] == pytest.approx(375 / 188e12, rel=0.005)
    assert tensor.energy_j_per_flop["int8"] == pytest.approx(375 / 750e12, rel=0.005)
    assert vector.peak_flop_per_s["fp32"] == pytest.approx(5120 * 0.9e9)
    assert vector.energy_j_per_flop["fp32"] == pytest.approx(375 / (5120 * 0.9e9), rel=0.01)
