"""Where a brief clause's subject ends and its action begins, by rules a reader can check.

No English tagger ships its model inside a package (spaCy's and NLTK's models are separate
downloads, and re-uploads of them are not well kept), so the split uses what a tagger would
have learnt for this narrow job: a lexicon of the verbs video briefs use, with their
inflections generated; the shape of an English noun phrase (determiner, adjectives and noun
modifiers, head noun), so "a small fishing boat" stays whole; and, for verbs not in the lexicon,
suffixes guarded by that shape.
"""

from __future__ import annotations

_VERB_BASES = """
walk run jog sprint stroll wander march trot gallop canter stride step limp hop skip leap jump bound
climb crawl creep sneak tiptoe stumble trip slip slide fall drop tumble roll spin twirl turn twist rotate
circle orbit fly soar glide hover swoop dive plunge float drift sail row paddle surf swim splash wade ride
drive cycle race speed zoom rush dash hurry chase follow lead flee escape enter exit leave arrive approach
pass cross emerge appear vanish disappear fade rise lift raise sink settle land descend ascend sit stand
kneel lie lean rest sleep wake stretch reach point wave nod shake shiver tremble sway bob bounce swing rock
flutter flap flicker flash glow shine sparkle glitter gleam shimmer pulse blink burn smoulder smolder smoke
steam boil bubble pour flow stream trickle drip spill spray crash break shatter explode burst collapse
crumble melt freeze thaw grow bloom blossom open close unfold spread scatter gather swirl ripple churn foam
eat drink cook chop stir bake fry taste sip bite chew lick play dance sing laugh smile cry shout scream
whisper talk speak read write draw paint type look stare gaze glance watch peer search scan listen hold
carry push pull drag throw catch kick hit punch grab pick place put set hand give take toss juggle fill
empty wipe clean wash brush comb dress wear fix build repair assemble hammer cut saw dig plant harvest hug
kiss embrace greet fight wrestle box argue sweep blow gust howl rain snow drizzle roar rumble thunder strike
move shift browse scroll tap swipe hunt graze feed nest perch peck prowl stalk pounce wag wheel spiral
slow stop pause wait hesitate begin start keep continue finish tip spill sprinkle knead slice serve mend
weave knit sew pedal skate ski snowboard glow breathe blow drum strum pluck grind skid drift lap loom tower
stretch yawn blink cascade tumble bask unfurl billow waft sweep pace patrol hurtle careen
tighten loosen form explore text cheer flip stack ring knit water ignite inspect examine sniff
"""
_IRREGULAR = """
ran flew swam rode drove fell rose sank sat stood knelt lay woke shook swung shone broke burst froze grew
ate drank sang wrote drew held threw caught hit took gave began kept led fled left struck blew spun slid
bit dug fought wore hung leapt leaped crept swept wove sewed sewn risen fallen flown driven ridden swum
"""


def _inflections(base: str) -> dict[str, str]:
    """The -s, -ed and -ing forms of a regular verb, with English spelling rules."""
    forms = {base: "base"}
    if base.endswith(("s", "sh", "ch", "x", "z", "o")):
        forms[base + "es"] = "s"
    elif base.endswith("y") and base[-2:-1] not in "aeiou":
        forms[base[:-1] + "ies"] = "s"
    else:
        forms[base + "s"] = "s"
    # A final consonant after one short vowel doubles (hop -> hopping); both spellings are kept
    # where English is not sure (travel, cancel), which only widens the lexicon.
    doubled = base + base[-1] if (len(base) >= 3 and base[-1] not in "aeiouwxy" and base[-2] in "aeiou"
                                  and base[-3] not in "aeiou") else base
    stem = base[:-1] if base.endswith("e") and not base.endswith(("ee", "ye", "oe")) else base
    if base.endswith("ie"):
        stem = base[:-2] + "y"
    for form in {stem + "ing", doubled + "ing"}:
        forms[form] = "ing"
    past = base + "d" if base.endswith("e") else (base[:-1] + "ied" if base.endswith("y") and
                                                  base[-2:-1] not in "aeiou" else doubled + "ed")
    forms[past] = "ed"
    return forms


VERB_FORMS: dict[str, str] = {}
for _base in _VERB_BASES.split():
    VERB_FORMS.update({k: v for k, v in _inflections(_base).items() if k not in VERB_FORMS})
VERB_FORMS.update({form: "ed" for form in _IRREGULAR.split()})

DETERMINERS = set("""a an the this that these those my your his her its our their each every another no both all
some any many several few one two three four five six seven eight nine ten dozens hundreds thousands of""".split())
ADJECTIVES = set("""small big large tiny huge giant little tall short long wide narrow old young new ancient modern lone
single empty busy quiet crowded dark bright pale deep shallow wet dry cold warm hot frozen rainy snowy sunny
foggy misty stormy cloudy windy dusty sandy rocky grassy leafy wooden golden silver red orange yellow green
blue purple pink white black grey gray brown violet magenta cyan teal crimson neon distant far vast calm
gentle soft hard heavy fresh ripe wild lush barren quaint rustic elegant vintage retro futuristic abandoned
ruined rusty shiny glossy smooth rough fluffy furry happy sad tired elderly lonely sleepy giant baby
paper glass metal stone brick marble steel iron copper plastic electric hot-air still clear open
massive active creative festive pensive expensive impressive decorative attractive""".split())
# Not -ive or -ian: detective, olive and musician are nouns as often as not.
ADJECTIVE_ENDINGS = ("ful", "ous", "less", "ish", "able", "ible", "ese")
AUXILIARIES = {"is", "are", "was", "were", "keeps", "keep", "starts", "start", "begins", "begin"}
# Prepositions that name where the action is; they start the environment part.
LOCATIVES = {"in", "on", "at", "through", "across", "over", "under", "along", "inside", "beneath", "beside",
             "near", "around", "above", "below", "behind", "among", "between", "beyond", "within", "outside",
             "by", "amid", "atop", "underneath"}
# Prepositions that name where the action goes; they stay with the action ("glides into the harbour").
PATHS = {"into", "onto", "toward", "towards", "past", "from", "to", "up", "down", "off", "out", "away",
         "against", "after", "with"}


def _bare(word: str) -> str:
    return word.lower().strip(",.'\"!?;:()")


def _modifier_position(words: list[str], i: int) -> bool:
    """Word i sits inside a noun phrase: after a determiner, an adjective, 'of', or a participle
    that follows a determiner ("a potted plant")."""
    before = _bare(words[i - 1])
    return before in DETERMINERS or _is_adjective(before) or (
        i >= 2 and before.endswith(("ed", "ing")) and _bare(words[i - 2]) in DETERMINERS)


def _is_adjective(word: str) -> bool:
    return word in ADJECTIVES or (word.endswith(ADJECTIVE_ENDINGS) and len(word) > 5 and not word.endswith("fish"))


def _looks_finite(word: str) -> bool:
    """A verb form the lexicon does not know, by its suffix (stalks, vacuums, shimmies)."""
    return (word.endswith("s") and not word.endswith(("ss", "us", "is", "ics")) and len(word) > 3) or \
        (word.endswith("ing") and len(word) > 5)


def _verb_at(words: list[str], i: int) -> str | None:
    """'lexicon' or 'suffix' if word i can start the action, else None."""
    word = _bare(words[i])
    if _modifier_position(words, i) or (words[i - 1][-1:] in ",;" and VERB_FORMS.get(word) == "base"):
        return None
    following = _bare(words[i + 1]) if i + 1 < len(words) else ""
    # A noun used like a verb is followed by the real verb: "cherry blossoms fall", "kids race"
    # (a plural subject takes the base form; "blows bubbles" is verb and object).
    if following and VERB_FORMS.get(following) == "base" and not _modifier_position(words, i + 1):
        return None
    if word in VERB_FORMS:
        return "lexicon"
    if _looks_finite(word) and not _is_adjective(word):
        return "suffix"
    return None


def find_verb(words: list[str]) -> int | None:
    """Index of the word where the action starts (its auxiliary or adverb included), else None.

    A lexicon verb wins over a suffix guess, unless the guess is followed by what follows verbs
    (a determiner, a preposition, an adverb, the end), as in "a chef flips a pancake"."""
    verb = guessed = None
    for i in range(1, len(words)):
        kind = _verb_at(words, i)
        following = _bare(words[i + 1]) if i + 1 < len(words) else ""
        if kind == "lexicon" or (kind == "suffix" and (
                not following or following in DETERMINERS | LOCATIVES | PATHS or following.endswith("ly"))):
            verb = i
            break
        if kind == "suffix" and guessed is None:
            guessed = i
    verb = verb if verb is not None else guessed
    if verb is None:
        return None
    while verb > 1 and (_bare(words[verb - 1]) in AUXILIARIES or _bare(words[verb - 1]).endswith("ly")):
        verb -= 1  # "is dancing", "slowly stretches": the action starts at the helper word
    return verb


def split_clause(clause: str) -> tuple[str, str, str]:
    """'A small fishing boat glides into the harbour' -> ('a small fishing boat', 'glides into the
    harbour', ''); 'a fox trots through snow' -> ('a fox', 'trots', 'through snow')."""
    words = clause.split()
    if not words:
        return "", "", ""
    verb = find_verb(words)
    start = verb if verb is not None else 1
    # A preposition followed by another is a particle of the verb ("flickers on above the alley").
    place = next((i for i in range(start, len(words) - 1) if _bare(words[i]) in LOCATIVES
                  and _bare(words[i + 1]) not in LOCATIVES | PATHS), None)
    if verb is None:
        subject, action = words[:place], []
    else:
        subject, action = words[:verb], words[verb:place]
    environment = words[place:] if place is not None else []
    if subject and _bare(subject[0]) in DETERMINERS and subject[0][:1].isupper() and not subject[0][1:].isupper():
        subject[0] = subject[0].lower()  # "A boat" -> "a boat"; proper names keep their capital
    return " ".join(subject), " ".join(action), " ".join(environment)
