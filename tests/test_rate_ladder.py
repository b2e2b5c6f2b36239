"""The rate ladder climbs: on the 50 held-out BSDS500 photos (outside every training set), each
decoder that ships spends more bits at each higher rate point and gives a better picture for them
(`make test-slow`, ~8 min on one core). A point that costs more and gives less must not ship.

Decoders: the teacher on its own files; the deployable codec (teacher's files as .lic v2, the
quantised student); the tuned deployable codec (the encoder tuned for the student, its own files)."""

import pytest

from bench.students import evaluate_point
from quantize.ship_students import read_students
from training.data import held_out_images, load_images

pytestmark = pytest.mark.slow

DECODERS = ("teacher", "deployable", "tuned_deployable")


@pytest.fixture(scope="module")
def ladder():
    photos = held_out_images()
    if len(photos) < 50:
        pytest.skip("the 50 held-out BSDS500 photos are not at ../shared/data/bsds500/test")
    images = load_images(photos)
    return {e["quality"]: evaluate_point(e, images)["mean"] for e in read_students()}


@pytest.mark.parametrize("decoder", DECODERS)
def test_each_rate_point_costs_more_and_gives_more(ladder, decoder):
    qs = sorted(ladder)
    assert len(qs) >= 2
    points = [(q, ladder[q][decoder]["bpp"], ladder[q][decoder]["psnr"]) for q in qs]
    for (qa, ba, pa), (qb, bb, pb) in zip(points, points[1:]):
        assert bb > ba, f"{decoder}: q{qb} spends {bb:.4f} bpp, not more than q{qa}'s {ba:.4f}"
        assert pb > pa, f"{decoder}: q{qb} gives {pb:.2f} dB for {bb:.4f} bpp, not more than q{qa}'s {pa:.2f} dB"
