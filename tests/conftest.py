"""Shared fixtures: the ICT head is loaded once per session (26k vertices, 23 MB)."""

from __future__ import annotations

import os
import shutil
import socket
import tempfile
from pathlib import Path

import pytest

from engines.dataset.build import SAMPLE_ENV
from engines.face.ict import ICTFaceModel
from engines.files.assets import AssetMissingError, asset_root


def pytest_configure(config) -> None:
    """The tests never see this machine's sample gallery (the servers they start would list
    its subjects); the gallery test points the variable at its own build."""
    os.environ[SAMPLE_ENV] = str(Path(tempfile.gettempdir()) / "vn3d-tests-no-sample-gallery")


@pytest.fixture(scope="session")
def trained_emotion_cache(ict, tmp_path_factory) -> Path:
    """A cache (not this machine's) in which the default ERM and detectors were trained from
    nothing, once for the session. Tests that need the models but do not test their
    training start from a copy of it (``seed_cache``) instead of training them again."""
    from engines.emotion.models import default_emotion_models

    root = tmp_path_factory.mktemp("trained-cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("VN3D_CACHE", str(root))
        default_emotion_models(ict.expression_names)
    return root


@pytest.fixture(scope="session")
def seed_cache(trained_emotion_cache):
    """``seed_cache(folder, *more)``: ``folder`` made a fresh cache holding the trained
    emotion models and whatever the caches ``more`` hold; returns it."""

    def seed(folder: Path, *more: Path) -> Path:
        for cache in (trained_emotion_cache, *more):
            shutil.copytree(cache, folder, dirs_exist_ok=True)
        return folder

    return seed


@pytest.fixture(scope="module")
def emotion_models(ict, tmp_path_factory, seed_cache):
    """The default ERM and detector, read from a fresh cache holding the session's."""
    from engines.emotion.models import default_emotion_models

    mp = pytest.MonkeyPatch()
    mp.setenv("VN3D_CACHE", str(seed_cache(tmp_path_factory.mktemp("cache"))))
    yield default_emotion_models(ict.expression_names)
    mp.undo()


@pytest.fixture(scope="module")
def small_app(tmp_path_factory, seed_cache):
    """A prepared server App (64 px renders, no gallery, its own store and cache), for
    driving the protocol without a network."""
    from server.app import App
    from server.config import ServerConfig

    mp = pytest.MonkeyPatch()
    mp.setenv("VN3D_CACHE", str(seed_cache(tmp_path_factory.mktemp("cache"))))
    app = App(ServerConfig(size=64, sample_gallery=False,
                           avatar_store=str(tmp_path_factory.mktemp("store"))))
    app.prepare()
    yield app
    mp.undo()


@pytest.fixture(scope="session")
def probe_avatar(ict):
    """A small valid avatar (no hair, a 64 x 128 texture), made without the builder."""
    import numpy as np

    from avatars.builder import Avatar
    from avatars.identity_fit import PhotoFit

    photo = PhotoFit(np.zeros(ict.n_shape, np.float32), np.zeros(ict.n_expression, np.float32),
                     np.zeros(3), np.array([0.0, 0.0, 60.0]), 800.0, 400, 400, 1.0,
                     np.zeros((0, 2)))
    return Avatar("probe", ict.name, np.zeros(ict.n_shape, np.float32),
                  np.full((64, 128, 3), 180, np.uint8), None, (0.2, 0.1, 0.1), "0" * 64, photo)


@pytest.fixture(scope="session")
def ict() -> ICTFaceModel:
    try:
        return ICTFaceModel()
    except AssetMissingError as exc:  # a broken checkout, not a reason to skip
        pytest.fail(str(exc))


@pytest.fixture(scope="session")
def ray_cluster(tmp_path_factory):
    """A Ray head (no call slots) and two worker nodes of one slot each, as separate
    ``vn3d worker`` processes, shared by the cluster tests (starting one costs ~17 s
    here): the head's address and the nodes' processes (the head's first). A test that
    stops a node must be the last to use it (test_cluster's failover test is)."""
    from server.cluster.local import local_cluster

    with local_cluster(tmp_path_factory.mktemp("ray")) as (address, procs):
        yield address, procs


@pytest.fixture
def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def in_private_netns() -> bool:
    """True when the only network interface is loopback (``unshare --net``)."""
    return {name for _, name in socket.if_nameindex()} == {"lo"}


def pytest_collection_modifyitems(config, items) -> None:
    """WebRTC and browser tests (marker ``netns``) run only in a private network namespace,
    where nothing but loopback exists: ``make test`` runs them that way."""
    if in_private_netns():
        return
    skip = pytest.mark.skip(
        reason="WebRTC test: run inside a private network namespace "
        "(unshare --net -- sh -c 'ip link set lo up && pytest -m netns'; make test does this)"
    )
    for item in items:
        if "netns" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def london_dataset(ict, tmp_path_factory, trained_emotion_cache):
    """A dataset built once for the session from two London people (neutral + smiling
    photo; the other 5 expressions by the session's ERM) and a subject whose photo is no
    image: (photos, dataset folder, manifest, ERM). Modules that write into it take a copy."""
    from engines.dataset.build import build_dataset
    from engines.emotion.models import default_emotion_models

    with pytest.MonkeyPatch.context() as mp:  # read only: the build's caches go elsewhere
        mp.setenv("VN3D_CACHE", str(trained_emotion_cache))
        erm = default_emotion_models(ict.expression_names).erm
    photos = london_photos(tmp_path_factory.mktemp("photos"))
    (photos / "noface").mkdir()
    (photos / "noface" / "neutral.png").write_bytes(b"not an image")
    out = tmp_path_factory.mktemp("dataset")
    return photos, out, build_dataset(photos, out, ict, erm), erm


def london_photos(folder: Path, people: tuple[str, ...] = ("001", "004")) -> Path:
    """Fills a dataset photo folder PERSON/{neutral,happy}.jpg from the London Set."""
    london = asset_root() / "faces" / "london_set"
    for person in people:
        (folder / person).mkdir()
        shutil.copy(london / f"london_{person}_neutral.jpg", folder / person / "neutral.jpg")
        shutil.copy(london / f"london_{person}_smiling.jpg", folder / person / "happy.jpg")
    return folder
