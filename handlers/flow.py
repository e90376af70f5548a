"""The one guided-flow engine behind /request, /notice and /meeting new.

A flow is a typed draft (a dataclass kept in the user's persisted data, so it survives
a restart), an ordered list of steps, each with the question it asks and how to tell
it is answered, and a confirm step. The engine owns what every flow needs alike: the
draft's identity (stored with what it creates, so a second submit creates nothing),
its time limit, asking the next unanswered step, quitting, and the answers to buttons
of a draft that is over.
"""

from __future__ import annotations

import uuid
import warnings
from collections.abc import Awaitable
from collections.abc import Callable
from collections.abc import Mapping
from collections.abc import Sequence
from dataclasses import asdict
from dataclasses import dataclass
from dataclasses import field
from dataclasses import fields
from datetime import datetime
from datetime import timedelta
from enum import Enum
from typing import Any
from typing import Generic
from typing import Self
from typing import TypeVar
from zoneinfo import ZoneInfo

from sqlalchemy.ext.asyncio import AsyncSession
from telegram import Message
from telegram import Update
from telegram.ext import ApplicationHandlerStop
from telegram.ext import BaseHandler
from telegram.ext import CallbackQueryHandler
from telegram.ext import CommandHandler
from telegram.ext import ConversationHandler
from telegram.ext import MessageHandler
from telegram.ext import filters
from telegram.ext.filters import BaseFilter
from telegram.warnings import PTBUserWarning

from bot.commands import Where
from bot.services import Actor
from bot.services import Services
from bot.services import services
from core.clock import time_zone
from core.enums import Role
from handlers.common import CANCELLED
from handlers.common import EXPIRED
from handlers.common import Context
from handlers.common import Key
from handlers.common import close_confirmation
from handlers.common import confirmation
from handlers.common import confirmation_open
from handlers.common import current_actor
from handlers.common import dead_button
from handlers.common import edit_query_message
from handlers.common import guarded
from handlers.common import handled
from handlers.common import keyboard
from handlers.common import note_prompt
from handlers.common import offer_confirmation
from handlers.common import prompt_token
from handlers.common import reply
from handlers.common import submit_ending_flow
from i18n import Translator

END = ConversationHandler.END
# What a step takes as a typed answer; anything else that is not a command is "not text".
TYPED = filters.TEXT & ~filters.COMMAND
NOT_TYPED = ~filters.TEXT & ~filters.COMMAND
Created = TypeVar("Created")
E = TypeVar("E", bound=Enum)


@dataclass
class Draft:
    """What every draft carries: `id`, its identity, stored with what it creates; `token`,
    the confirmation its buttons carry; when it began and was last touched (ISO)."""

    id: str = ""
    token: str = ""
    started: str = ""
    touched: str = ""

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Self:
        known = {f.name for f in fields(cls)}
        return cls(**{key: value for key, value in data.items() if key in known})

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


D = TypeVar("D", bound=Draft)


def attachment_of(message: Message | None) -> dict[str, Any] | None:
    """A photo (its largest size) or a document sent for a draft, as the draft keeps it."""
    if message is None:
        return None
    if message.photo:
        return {"type": "photo", "file_id": message.photo[-1].file_id}
    if message.document:
        return {"type": "document", "file_id": message.document.file_id,
                "name": message.document.file_name or ""}
    return None


def reader_zone_name(svc: Services, actor: Actor) -> str:
    """The time zone a person's answers are read in: their unit's, else the bot's."""
    unit = actor.user.unit if actor.user is not None else None
    return (unit.timezone if unit is not None and unit.timezone else None) or \
        svc.settings.bot_timezone


def reader_zone(svc: Services, actor: Actor) -> ZoneInfo:
    """`reader_zone_name` as a zone (the bot's, should the unit's be unknown)."""
    return time_zone(reader_zone_name(svc, actor), svc.settings.bot_timezone)


@dataclass(frozen=True)
class Prompt:
    """A step's question: its text and rows of buttons (handlers.common.keyboard).
    `with_notes`: the text already shows the turn's notes (else they go before it)."""

    text: str
    buttons: Sequence[Sequence[Key]] = ()
    with_notes: bool = False


@dataclass(frozen=True)
class Step(Generic[D]):
    """One question of a flow: `state` in the conversation, whether the draft already
    answers it, and the prompt that asks it."""

    state: int
    answered: Callable[[D], bool]
    prompt: Callable[[Turn[D]], Awaitable[Prompt]]


@dataclass
class Turn(Generic[D]):
    """One update inside a flow: who is answering, their draft, and the ways on."""

    flow: GuidedFlow[D]
    update: Update
    context: Context
    actor: Actor
    draft: D
    notes: Sequence[str] = ()

    @property
    def svc(self) -> Services:
        return services(self.context)

    @property
    def tr(self) -> Translator:
        return self.actor.tr

    @property
    def query_data(self) -> str:
        query = self.update.callback_query
        return (query.data or "") if query is not None else ""

    def pressed(self, prefix: str, kind: type[E]) -> E | None:
        """The member of `kind` the pressed button names after `prefix` (None: no member)."""
        raw = self.query_data.removeprefix(prefix)
        return kind(raw) if raw in kind.__members__ else None

    async def unclear(self, state: int, unknown: str) -> int:
        """A choice step's answer that means nothing: a button (stale, or forged) says so,
        a typed word is asked again after `unknown`; the draft is unchanged."""
        if self.update.callback_query is not None:
            return await self.alert(state, self.tr("errors.stale_button"))
        return await self.ask(state, [unknown])

    async def alert(self, state: int, text: str) -> int:
        """Answer the pressed button with `text` in an alert and wait at `state`."""
        query = self.update.callback_query
        assert query is not None
        await query.answer(text, show_alert=True)
        return await handled(state)

    async def reshow(self, state: int, note: str | None = None) -> int:
        """After a press that changed a choice (a unit ticked): the pressed prompt shows
        the step's question as it now stands, the press answered with `note` in an alert
        if any, and the step waits on."""
        query = self.update.callback_query
        assert query is not None
        await query.answer(note, show_alert=bool(note))
        prompt = await self.flow.step_of(state).prompt(self)
        await edit_query_message(self.update, prompt.text, keyboard(prompt.buttons),
                                 courtesy=True)
        return await handled(state)

    def quit_button(self) -> tuple[str, str]:
        """The ✖️ of this draft: it cancels this draft only."""
        return self.flow.quit_button(self.tr, self.draft)

    async def ask(self, state: int, notes: Sequence[str] = ()) -> int:
        """Send the prompt of `state` (after any notes) and wait there."""
        self.flow.save(self.context, self.draft)
        step = self.flow.step_of(state)
        self.notes = notes
        prompt = await step.prompt(self)
        text = prompt.text
        if notes and not prompt.with_notes:
            text = "\n".join(notes) + "\n\n" + text
        self.note(await reply(self.update, text,
                              keyboard(prompt.buttons) if prompt.buttons else None))
        raise ApplicationHandlerStop(state)

    def note(self, message_id: int | None) -> None:
        """The prompt just sent is this draft's: its buttons, pressed once the draft is
        over, say what became of it (`GuidedFlow.stale_button`)."""
        chat = self.update.effective_chat
        if chat is not None:
            note_prompt(self.context, self.draft.token, chat.id, message_id)

    async def offer(self, state: int, notes: Sequence[str], choices: Sequence[Key],
                    next_key: Key) -> int:
        """Candidates to press (units a typed name may mean), one a row under the notes,
        then the step's next and ✖️ buttons; without any, the step's question after the
        notes. The flow stays at `state`."""
        if not choices:
            return await self.ask(state, notes)
        rows: list[list[Key]] = [[choice] for choice in choices]
        rows.append([next_key, self.quit_button()])
        self.note(await reply(self.update, "\n".join(notes), keyboard(rows)))
        raise ApplicationHandlerStop(state)

    async def advance(self, notes: Sequence[str] = ()) -> int:
        """Ask the first question the draft does not answer yet (else the confirm step)."""
        return await self.ask(self.flow.next_state(self.draft), notes)

    async def stay(self, state: int, text: str) -> int:
        """Say what is wrong with the answer and wait for another, the draft unchanged."""
        self.flow.save(self.context, self.draft)
        await reply(self.update, text)
        raise ApplicationHandlerStop(state)

    async def closing(self, choice: str) -> None:
        """After a button: the pressed prompt shows the choice instead of its buttons."""
        query = self.update.callback_query
        if query is None:
            return
        await query.answer()
        message = query.message
        base = message.text_html if isinstance(message, Message) and message.text else ""
        await edit_query_message(self.update, f"{base}\n\n▶ {choice}" if base else f"▶ {choice}")

    async def end(self) -> int:
        raise ApplicationHandlerStop(END)


FlowHandler = Callable[[Turn[D]], Awaitable[int]]


@dataclass
class GuidedFlow(Generic[D]):
    """A flow's declaration: `name` as persisted, where its draft lives, the draft's
    type, the confirmation `kind` its buttons carry, the `callback` prefix of its
    buttons, its steps (asked in order) and its confirm step, its time limit and the
    catalogue keys of what it says when abandoned or cancelled. `side_steps` are asked
    only when a handler says so (a notice's send time, from its preview); `also_closes`
    names other prompts of the feature's conversation that /cancel ends too."""

    name: str
    draft_key: str
    draft_type: type[D]
    kind: str
    callback: str
    steps: Sequence[Step[D]]
    confirm: Step[D]
    role: Role
    ttl: timedelta
    expired_key: str
    cancelled_key: str
    quit_key: str
    text_expected_key: str = ""
    confirm_expects_key: str = ""
    side_steps: Sequence[Step[D]] = ()
    also_closes: Sequence[str] = field(default_factory=tuple)
    # True when the draft goes back to its confirm step whatever is unanswered (a
    # request's details edited from its summary).
    back_to_confirm: Callable[[D], bool] = lambda draft: False

    # ------------------------------------------------------------------ the draft

    def begin(self, context: Context, now: datetime, **values: Any) -> D:
        """A new draft, replacing any other of this flow: a new confirmation of the flow's
        kind supersedes the old draft's, so its buttons say they were replaced."""
        draft = self.draft_type(id=uuid.uuid4().hex, token=offer_confirmation(context, self.kind),
                                started=now.isoformat(), **values)
        self.save(context, draft)
        return draft

    def live(self, context: Context, now: datetime) -> D | None:
        """The draft, unless there is none or it was left alone longer than the limit."""
        data = (context.user_data or {}).get(self.draft_key)
        if not data:
            return None
        draft = self.draft_type.from_json(data)
        draft.started = draft.started or now.isoformat()  # begun before drafts were dated
        if now - datetime.fromisoformat(draft.touched or draft.started) > self.ttl:
            self.discard(context, state=EXPIRED)
            return None
        draft.touched = now.isoformat()
        return draft

    def save(self, context: Context, draft: D) -> None:
        assert context.user_data is not None
        context.user_data[self.draft_key] = draft.to_json()

    def discard(self, context: Context, *, everything: bool = True, token: str = "",
                state: str = CANCELLED) -> None:
        """Drop the draft (and, with `everything`, the other prompts this flow names in
        `also_closes`), or with `token` only the one whose buttons carry it: their
        buttons are dead from now on, and say `state` (cancelled, or expired)."""
        if context.user_data is None:
            return
        for key in (self.draft_key, *(self.also_closes if everything else ())):
            held = context.user_data.get(key) or {}
            if token and held.get("token") not in (token, None):
                continue
            close_confirmation(context, held.get("token") or "", state)
            context.user_data.pop(key, None)

    def next_state(self, draft: D) -> int:
        if self.back_to_confirm(draft):
            return self.confirm.state
        for step in self.steps:
            if not step.answered(draft):
                return step.state
        return self.confirm.state

    def step_of(self, state: int) -> Step[D]:
        for step in (*self.steps, *self.side_steps, self.confirm):
            if step.state == state:
                return step
        raise KeyError(state)

    def quit_button(self, tr: Translator, draft: D) -> tuple[str, str]:
        return tr(self.quit_key), f"{self.callback}:quit:{draft.token}"

    # ------------------------------------------------------------------ handlers

    def on(self, handler: FlowHandler[D], where: Where = Where.private
           ) -> Callable[[Update, Context], Awaitable[int]]:
        """A step's handler: guarded (role, private chat), given the live draft; a draft
        left too long ends the flow instead, and a button of an earlier draft's prompt
        changes nothing (it says what became of that draft)."""

        @guarded(self.role, where)
        async def wrapper(update: Update, context: Context, actor: Actor) -> int:
            draft = self.live(context, services(context).now())
            if draft is None:
                return await self.expired(update, actor.tr)
            query = update.callback_query
            pressed = prompt_token(context, query.message) if query is not None else None
            if pressed not in (None, draft.token):  # a prompt of an earlier draft
                await self.stale_button(update, context)
                raise ApplicationHandlerStop  # the draft in progress stays where it is
            turn = Turn(self, update, context, actor, draft)
            try:
                return await handler(turn)
            finally:
                if (context.user_data or {}).get(self.draft_key) is not None:
                    self.save(context, turn.draft)

        wrapper.__name__ = wrapper.__qualname__ = handler.__name__
        return wrapper

    def start(self, update: Update, context: Context, actor: Actor, **values: Any) -> Turn[D]:
        """A new draft and the turn that goes on with it."""
        draft = self.begin(context, services(context).now(), **values)
        return Turn(self, update, context, actor, draft)

    async def expired(self, update: Update, tr: Translator) -> int:
        """The flow was abandoned long ago: end it. A button says so; a typed message is
        left to the other features (it was not meant for this flow)."""
        if update.callback_query is not None:
            await update.callback_query.answer(tr(self.expired_key), show_alert=True)
            raise ApplicationHandlerStop(END)
        return END

    async def quit(self, update: Update, context: Context) -> int:
        """✖️ or /cancel: leave the flow, nothing stored. The ✖️ of a draft already over
        changes nothing."""
        tr = (await current_actor(update, context)).tr
        query = update.callback_query
        token = (query.data or "").removeprefix(f"{self.callback}:quit").lstrip(":") \
            if query else ""
        if token and not await confirmation_open(
                update, context, tr, token, confirmation(context, token).get("kind") or self.kind):
            raise ApplicationHandlerStop  # whatever is in progress goes on as it was
        self.discard(context, token=token)
        if query is not None:
            await query.answer()
            await edit_query_message(update, tr(self.cancelled_key))
        else:
            await reply(update, tr(self.cancelled_key))
        raise ApplicationHandlerStop(END)

    def not_text(self, state: int) -> Callable[[Update, Context], Awaitable[int]]:
        """A photo or sticker where a typed answer or a button is expected: say so, stay."""

        async def not_text(turn: Turn[D]) -> int:
            await reply(turn.update, turn.tr(self.text_expected_key))
            raise ApplicationHandlerStop(state)

        return self.on(not_text)

    async def _typed_at_confirm(self, turn: Turn[D]) -> int:
        """Text at the confirm step: not a lookup; say it wants a button, show it again."""
        return await turn.ask(self.confirm.state, [turn.tr(self.confirm_expects_key)])

    @property
    def typed_at_confirm(self) -> Callable[[Update, Context], Awaitable[int]]:
        return self.on(self._typed_at_confirm)

    async def stale_button(self, update: Update, context: Context) -> None:
        """A button of this flow that no step waits for: one of a draft that is over (a
        step's prompt, or the confirmation) says what became of it: cancelled, stored,
        replaced by a newer draft, or left too long; a button of an earlier step of the
        draft still open says so; a button nothing is known of, that it has expired."""
        query = update.callback_query
        assert query is not None
        tr = (await current_actor(update, context)).tr
        open_draft = self.live(context, services(context).now()) is not None  # or expired now
        carried = (query.data or "").rpartition(":")[2]  # the confirm step's buttons carry it
        drafted = prompt_token(context, query.message)
        token = drafted or carried
        if confirmation(context, token).get("state") == EXPIRED:
            await query.answer(tr(self.expired_key), show_alert=True)
        elif not await dead_button(update, context, tr, token,
                                   step=drafted not in (None, carried)):
            await query.answer(tr("errors.earlier_step" if open_draft else self.expired_key),
                               show_alert=True)

    async def submit(self, turn: Turn[D],
                     work: Callable[[AsyncSession], Awaitable[Created]]) -> Created:
        """Store what the draft creates and, in the same transaction, the flow's end
        (handlers.common.submit_ending_flow)."""
        return await submit_ending_flow(turn.update, turn.context, flow=self.name,
                                        token=turn.draft.token, draft_key=self.draft_key,
                                        work=work)

    def answers(self, state: int, typed: FlowHandler[D] | None,
                pressed: FlowHandler[D] | None = None, pattern: str = "",
                takes: BaseFilter = TYPED) -> list[BaseHandler[Any, Any, Any]]:
        """A step's handlers, in the order they are tried: a typed answer (`takes`), a
        button of `pattern`, and a polite word for anything else (a sticker, a photo)."""
        handlers: list[BaseHandler[Any, Any, Any]] = []
        if typed is not None:
            handlers.append(MessageHandler(takes, self.on(typed)))
        if pressed is not None:
            handlers.append(CallbackQueryHandler(self.on(pressed), pattern=pattern))
        handlers.append(MessageHandler(NOT_TYPED, self.not_text(state)))
        return handlers

    def conversation(self, entry_points: list[BaseHandler[Any, Any, Any]],
                     states: dict[int, list[BaseHandler[Any, Any, Any]]],
                     fallbacks: Sequence[BaseHandler[Any, Any, Any]] = ()
                     ) -> ConversationHandler[Any]:
        """The persisted ConversationHandler of this flow; /cancel and ✖️ quit it."""
        quit_pattern = rf"^{self.callback}:quit(:[0-9a-f]{{8}})?$"
        return side_conversation(self.name, entry_points, states,
                                 [CommandHandler("cancel", self.quit),
                                  CallbackQueryHandler(self.quit, pattern=quit_pattern),
                                  *fallbacks])


def side_conversation(name: str, entry_points: list[BaseHandler[Any, Any, Any]],
                      states: dict[int, list[BaseHandler[Any, Any, Any]]],
                      fallbacks: list[BaseHandler[Any, Any, Any]]) -> ConversationHandler[Any]:
    """A feature's persisted conversation (a guided flow's, or a short one such as a
    request's note or a meeting's delegate): it survives a restart, and its entry
    point starts it again from any state."""
    with warnings.catch_warnings():
        # Buttons inside a per-chat conversation are intended (not tracked per message).
        warnings.simplefilter("ignore", PTBUserWarning)
        return ConversationHandler(entry_points=entry_points, states=states,
                                   fallbacks=fallbacks, allow_reentry=True, name=name,
                                   persistent=True)
