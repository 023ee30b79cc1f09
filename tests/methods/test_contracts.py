"""Every registered method keeps the method contract (:mod:`method_contract`): a test class is made
here for each name in :data:`~dualteacher.registry.METHODS`, so a new method needs no edit here."""

from dualteacher.registry import METHODS

from method_contract import MethodContract

for _name in METHODS:
    _cls = "Test" + "".join(part.title() for part in _name.split("_")) + "Contract"
    globals()[_cls] = type(_cls, (MethodContract,), {"method": _name, "__module__": __name__})


def test_every_registered_method_has_a_contract_test() -> None:
    covered = {
        cls.method
        for name, cls in globals().items()
        if name.startswith("Test") and isinstance(cls, type) and issubclass(cls, MethodContract)
    }
    assert covered == set(METHODS)
