"""The worker refuses to start on faust/aiokafka internals it was not measured with."""

from __future__ import annotations

import pytest

from processors.worker import faust_compat
from schemas.errors import ConfigurationError


def test_the_installed_versions_are_the_pinned_ones() -> None:
    assert faust_compat.check() == []


def test_another_version_is_refused_with_the_way_out(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(faust_compat.PINNED, "aiokafka", "0.99.0")
    monkeypatch.delenv(faust_compat.ALLOW_UNPINNED, raising=False)
    with pytest.raises(ConfigurationError) as refused:
        faust_compat.check()
    message = str(refused.value)
    assert "aiokafka 0.14.0 is installed, 0.99.0 is the version" in message
    assert "ORCHESTRAL_ALLOW_UNPINNED=1" in message


def test_a_missing_name_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    from faust.stores.rocksdb import Store

    monkeypatch.delattr(Store, "_db_for_partition")
    monkeypatch.delenv(faust_compat.ALLOW_UNPINNED, raising=False)
    with pytest.raises(ConfigurationError, match=r"Store\._db_for_partition is gone"):
        faust_compat.check()


def test_the_switch_lets_it_start_and_says_what_is_untested(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(faust_compat.PINNED, "faust-streaming", "9.9.9")
    monkeypatch.setenv(faust_compat.ALLOW_UNPINNED, "1")
    assert faust_compat.check() == [
        "faust-streaming 0.15.3 is installed, 9.9.9 is the version this worker was tested with"
    ]


def test_instance_attributes_are_found_in_the_classes_that_assign_them() -> None:
    from faust.transport.drivers import aiokafka

    assert faust_compat._defines(aiokafka.Consumer, "_committed_offset", "init")
    assert not faust_compat._defines(aiokafka.Consumer, "_no_such_thing", "init")
