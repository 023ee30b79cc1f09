"""Every registered method keeps the method contract (:mod:`method_contract`): one class here per
name in :data:`~dualteacher.registry.METHODS`."""

from method_contract import MethodContract

from dualteacher.registry import METHODS


class TestSupervised(MethodContract):
    method = "supervised"


class TestMeanTeacher(MethodContract):
    method = "mean_teacher"


class TestDualTeacher(MethodContract):
    method = "dual_teacher"


class TestFixMatch(MethodContract):
    method = "fixmatch"


class TestUniMatch(MethodContract):
    method = "unimatch"


def test_every_registered_method_has_a_contract_test() -> None:
    covered = {cls.method for cls in MethodContract.__subclasses__()}
    missing = [name for name in METHODS if name not in covered]
    assert not missing, f"add a MethodContract subclass in {__file__} for {missing}"
