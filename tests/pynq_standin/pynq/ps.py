"""pynq.ps.Clocks of the recording stand-in: setting a PL clock is logged."""

from pynq import LOG


class _ClocksMeta(type):
    @property
    def fclk0_mhz(cls):
        return cls._fclk0

    @fclk0_mhz.setter
    def fclk0_mhz(cls, mhz):
        LOG.append(("fclk0_mhz", float(mhz)))
        cls._fclk0 = float(mhz)


class Clocks(metaclass=_ClocksMeta):
    _fclk0 = 100.0
