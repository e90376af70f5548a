"""A local Telegram Bot API, checked against the Bot API 10.0 specification."""

from bot.emulator.faults import Faults
from bot.emulator.records import EMULATOR_TOKEN
from bot.emulator.records import ApiCall
from bot.emulator.server import BotApiEmulator
from bot.emulator.spec import Spec
from bot.emulator.spec import load_spec

__all__ = ["EMULATOR_TOKEN", "ApiCall", "BotApiEmulator", "Faults", "Spec", "load_spec"]
