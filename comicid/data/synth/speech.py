"""What synthetic characters say, built to carry identity the way manga speech does (``speech="manga"``).

In Manga109 the text of a frame tells the *book* apart far better than the *speaker*: each title has
its own world (places, objects, jargon), while a character's voice shows only in small habits that
most of its lines lack. Manga-MMTL (Nguyen et al., ICDAR 2021) measured exactly that, text-only album
classification much better than text-only character classification. This module reproduces the
structure, so that the same gap can be measured on synthetic books:

* **book world**: two topics dealt from :data:`TOPICS` (each a lexicon of nouns, verbs and places;
  books of one run share no topic up to five books) plus invented proper names; most lines are
  templates filled from the world;
* **character voice**: a catchphrase (from a shared pool, so other books reuse it), a verbal tic
  appended to some lines, a form of address used when naming another character, and a favourite
  topic; each habit shows in only a fraction of the character's lines (:data:`HABIT_RATES`);
* **naming others**: lines that call another character by name (with the speaker's form of address),
  a cue that points *away* from the speaker;
* **narration boxes** (rectangles, no speaker) and **sound effects** (free lettering, no speaker):
  text of the panel that belongs to nobody.

Randomness: every book's world and voices come from their own string-seeded stream, and every page's
words from another (``.../speech``), separate from the streams that plan and draw the pictures; see
``docs/SYNTH.md`` for what does and does not change in the pictures.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

#: topic -> (nouns, verbs, places); a book draws two.
TOPICS: dict[str, tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]]] = {
    "sea": (("SHIP", "ANCHOR", "TREASURE MAP", "STORM", "MAST", "COMPASS", "SHARK", "ISLAND"),
            ("SAIL", "ROW", "DIVE", "DROP ANCHOR"), ("HARBOUR", "REEF", "LIGHTHOUSE")),
    "school": (("EXAM", "HOMEWORK", "CLUB ROOM", "TEACHER", "BENTO", "TRANSFER STUDENT", "FESTIVAL", "ROOFTOP"),
               ("STUDY", "CONFESS", "SKIP CLASS", "PRACTISE"), ("CLASSROOM", "GYM", "LIBRARY")),
    "space": (("ROCKET", "ORBIT", "ASTEROID", "OXYGEN", "REACTOR", "SIGNAL", "ALIEN PROBE", "HYPERDRIVE"),
              ("LAUNCH", "DOCK", "SCAN", "WARP"), ("SPACE STATION", "BRIDGE", "MOON BASE")),
    "kitchen": (("RAMEN", "BROTH", "KNIFE", "RECIPE", "DUMPLINGS", "SPICE", "OVEN", "SECRET SAUCE"),
                ("COOK", "TASTE", "STIR", "SERVE"), ("RESTAURANT", "MARKET", "STALL")),
    "detective": (("CLUE", "ALIBI", "CULPRIT", "FINGERPRINT", "WITNESS", "LOCKED ROOM", "MOTIVE", "EVIDENCE"),
                  ("INVESTIGATE", "ACCUSE", "INTERROGATE", "DEDUCE"), ("CRIME SCENE", "MANSION", "POLICE STATION")),
    "sport": (("MATCH", "COACH", "GOAL", "TOURNAMENT", "RIVAL TEAM", "SCOREBOARD", "UNIFORM", "FINAL"),
              ("TRAIN", "SCORE", "DEFEND", "PASS"), ("STADIUM", "FIELD", "LOCKER ROOM")),
    "magic": (("SPELL", "WAND", "DRAGON", "POTION", "RUNE", "GRIMOIRE", "CURSE", "FAMILIAR"),
              ("CAST", "SUMMON", "BREW", "SEAL"), ("TOWER", "ACADEMY", "FOREST SHRINE")),
    "farm": (("HARVEST", "TRACTOR", "CHICKENS", "SCARECROW", "SEEDS", "RAIN", "BARN CAT", "PUMPKINS"),
             ("PLANT", "WATER", "FEED", "PLOUGH"), ("BARN", "ORCHARD", "VILLAGE")),
    "samurai": (("KATANA", "DOJO", "SHOGUN", "RONIN", "HONOUR", "DUEL", "SCROLL", "CASTLE GATE"),
                ("SPAR", "BOW", "STRIKE", "GUARD"), ("DOJO", "TEA HOUSE", "MOUNTAIN PASS")),
    "idol": (("CONCERT", "STAGE", "FANS", "SINGLE", "MICROPHONE", "AUDITION", "ENCORE", "COSTUME"),
             ("SING", "DANCE", "REHEARSE", "DEBUT"), ("STUDIO", "ARENA", "BACKSTAGE")),
}

_TEMPLATES = (
    "THE {noun} IS GONE FROM THE {place}!", "WE NEED THE {noun} TO {verb}.", "LET'S {verb} BEFORE DARK.",
    "MEET ME AT THE {place}.", "DID YOU SEE THE {noun} OF {proper}?", "I CAN'T {verb} LIKE THIS.",
    "THE {place} IS TOO QUIET.", "BRING THE {noun} TO {proper}.", "WHO TOOK MY {noun}?", "WE {verb} AT DAWN.",
    "FORGET THE {noun}, RUN!", "THAT {noun} AGAIN?", "THE {place} OF {proper}...", "NOBODY CAN {verb} AT {proper}.",
    "{proper} NEEDS A NEW {noun}.", "THEY SAY {proper} HAS NO {noun}.",
)
_NAMING = ("{addr}, LOOK OUT!", "WHERE IS {addr}?", "{addr}, YOU'RE LATE!", "THANKS, {addr}.",
           "{addr} WAS RIGHT.", "WAIT FOR ME, {addr}!")
_NARRATION = ("MEANWHILE, AT THE {place}...", "THREE DAYS LATER.", "THAT NIGHT, NEAR THE {place}.",
              "THE {noun} OF {proper} WAS NEVER FOUND.", "NOBODY IN {proper} KNEW ABOUT THE {noun}.",
              "THE NEXT MORNING.")
_SFX = ("BOOM!", "CRASH!", "WHOOSH", "THUD", "DOKI DOKI", "ZZZ", "BANG!", "CREAK...", "SPLASH!", "RRRING!")
#: Shared pools: characters of different books reuse them, so they are not a book signal on their own.
CATCHPHRASES = ("GREAT GEARS!", "BY THE MOON!", "HOLY RIVETS!", "EASY PEASY.", "NOT AGAIN...", "SUPERB!",
                "OH BROTHER.", "YIPPEE!", "CALM DOWN.", "ROGER THAT.", "WHATEVER.", "HOT SOUP!",
                "JUMPING JACKS!", "SO TIRED...", "BOOYAH!", "GOOD GRIEF.", "HOW TROUBLESOME.", "LEAVE IT TO ME!")
TICS = ("YOU KNOW?", "HEH.", "RIGHT?", "UMM...", "DESU!", "NYA!", "OKAY?", "DATTEBAYO!", "HMPH.", "HA HA!")
ADDRESS_FORMS = ("{name}", "{name}-KUN", "{name}-SAN", "MISTER {name}", "BIG SIS {name}", "LITTLE {name}",
                 "{name}-SENPAI", "CAPTAIN {name}")
#: How often each habit shows in a character's line: rare enough that most lines carry none.
HABIT_RATES = {"catchphrase": 0.15, "tic": 0.3, "favourite_topic": 0.5, "naming": 0.25}
NARRATION_RATE = 0.22
SFX_RATE = 0.12
_SYLLABLES = ("ka", "mi", "to", "ra", "ne", "zu", "lo", "bi", "sa", "ren", "jo", "ta", "vi", "ko", "mu", "el")


@dataclass(frozen=True)
class Voice:
    """A character's speech habits."""

    catchphrase: str
    tic: str
    address: str  # how this character names others, e.g. "{name}-SAN"
    favourite_topic: str


@dataclass(frozen=True)
class BookWorld:
    """A book's topics, invented place names and the voices of its cast (by identity id)."""

    topics: tuple[str, ...]
    proper_names: tuple[str, ...]
    voices: dict[str, Voice]


def plan_world(seed: int, book: str, identity_ids: list[str]) -> BookWorld:
    """The world and voices of ``book``, from a stream of their own (the picture streams are untouched)."""
    rng = random.Random(f"comicid-synth/{seed}/book/{book}/speech")
    # Topics are dealt from one deck per seed, so up to five books of a run share none (titles differ).
    deck = sorted(TOPICS)
    random.Random(f"comicid-synth/{seed}/topics").shuffle(deck)
    number = int(book.lstrip("b")) if book.lstrip("b").isdigit() else rng.randrange(len(deck))
    topics = (deck[(2 * number) % len(deck)], deck[(2 * number + 1) % len(deck)])
    proper = tuple(sorted({(rng.choice(_SYLLABLES) + rng.choice(_SYLLABLES) + rng.choice(_SYLLABLES)).upper()
                           for _ in range(3)}))
    voices = {identity: Voice(catchphrase=rng.choice(CATCHPHRASES), tic=rng.choice(TICS),
                              address=rng.choice(ADDRESS_FORMS), favourite_topic=rng.choice(topics))
              for identity in identity_ids}
    return BookWorld(topics=topics, proper_names=proper, voices=voices)


def _fill(rng: random.Random, world: BookWorld, template: str, topic: str | None = None) -> str:
    nouns, verbs, places = TOPICS[topic or rng.choice(world.topics)]
    return template.format(noun=rng.choice(nouns), verb=rng.choice(verbs), place=rng.choice(places),
                           proper=rng.choice(world.proper_names))


def speech_line(rng: random.Random, world: BookWorld, speaker: str, others: list[tuple[str, str]]) -> str:
    """One balloon of ``speaker`` (an identity id); ``others`` are ``(id, name)`` of the rest of the cast."""
    voice = world.voices[speaker]
    if others and rng.random() < HABIT_RATES["naming"]:
        addressed = voice.address.format(name=rng.choice(others)[1])
        line = rng.choice(_NAMING).format(addr=addressed)
    else:
        topic = voice.favourite_topic if rng.random() < HABIT_RATES["favourite_topic"] else None
        line = _fill(rng, world, rng.choice(_TEMPLATES), topic)
    if rng.random() < HABIT_RATES["catchphrase"]:
        line = f"{voice.catchphrase} {line}"
    if rng.random() < HABIT_RATES["tic"]:
        line = f"{line} {voice.tic}"
    return line


def narration(rng: random.Random, world: BookWorld) -> str:
    """A narration box: the book's world, nobody's voice."""
    return _fill(rng, world, rng.choice(_NARRATION))


def sound_effect(rng: random.Random) -> str:
    return rng.choice(_SFX)
