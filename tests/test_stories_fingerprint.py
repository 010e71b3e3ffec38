"""Near-duplicates on self-written texts: copies are found, independent write-ups are not."""

from __future__ import annotations

from monitor.stories.features import clean_headline
from monitor.stories.fingerprint import containment, fingerprint, near_duplicate

WIRE = (
    "Engineers restored power to the northern river port of Valdmark on Thursday after a storm of "
    "unusual strength brought down three transmission towers overnight. The regional utility said about "
    "forty thousand homes had been without electricity for nine hours. Crews worked through heavy rain to "
    "lay a temporary line across the flooded meadows south of the town. The mayor, Hella Stroem, thanked "
    "the workers and said the schools would reopen on Friday morning. Forecasters expect the wind to ease "
    "by the weekend, although more rain is likely in the hills. The utility plans to replace the fallen "
    "towers with taller steel masts designed for stronger gusts. Insurance assessors began visiting "
    "damaged farms in the afternoon, where barns lost roofs and orchards were flattened."
)
BOILERPLATE = (
    " Sign up for our morning newsletter to get the day's most important stories delivered to your inbox, "
    "and follow us on every social network for updates through the day."
)
INDEPENDENT = (
    "Valdmark had its lights back on by Thursday evening. A violent storm had toppled transmission towers "
    "in the night, leaving tens of thousands of households in the dark. Hella Stroem, the town's mayor, "
    "praised the repair teams, who strung a makeshift cable over waterlogged fields. Children will return "
    "to class on Friday, she told reporters outside the town hall. Meteorologists say calmer weather should "
    "arrive within days. Farmers counted the cost of ruined orchards and roofless barns as assessors "
    "arrived. The utility intends to put up sturdier masts to withstand future gales."
)


def live_blog(day: int, events: str) -> str:
    return (
        f"Here is what we know on day {day} of the flooding along the Valdmark river. {events} "
        "Emergency services have set up shelters in the sports halls of the three largest towns. "
        "Residents are asked to boil drinking water until further notice."
    )


def test_wire_copy_with_new_headline_and_boilerplate_is_a_near_duplicate_of_the_original() -> None:
    original = fingerprint(WIRE)
    copy = fingerprint("VALDMARK, Nordland (AP) — " + WIRE + BOILERPLATE)
    found = near_duplicate(copy, original)
    assert found is not None and not found.exact
    assert found.copy_is_first  # the republished wire copy points to the wire original


def test_trimmed_copy_points_to_the_fuller_text() -> None:
    sentences = WIRE.split(". ")
    trimmed = fingerprint(". ".join(sentences[:4]) + ".")
    full = fingerprint(WIRE)
    found = near_duplicate(full, trimmed)
    assert found is not None
    assert not found.copy_is_first  # the trimmed (second) text is the copy
    assert containment(trimmed, full) > 0.9


def test_exact_duplicate_ignores_quotes_case_and_whitespace() -> None:
    curly = WIRE.replace("day's", "day\u2019s").replace(" the ", "  THE ")
    assert fingerprint(curly).exact == fingerprint(WIRE).exact
    found = near_duplicate(fingerprint(curly), fingerprint(WIRE))
    assert found is not None and found.exact


def test_independent_write_up_of_the_same_event_is_not_a_near_duplicate() -> None:
    assert near_duplicate(fingerprint(INDEPENDENT), fingerprint(WIRE)) is None


def test_two_live_blogs_on_different_days_are_not_near_duplicates() -> None:
    day_51 = live_blog(51, "The water level at the old bridge fell by half a metre overnight, and two "
                           "villages downstream were evacuated as a precaution after the dyke cracked.")
    day_113 = live_blog(113, "Rebuilding of the harbour wall began with a ceremony attended by the "
                             "regional governor, who promised new funds for the fishing cooperative.")
    assert near_duplicate(fingerprint(day_51), fingerprint(day_113)) is None


def test_very_short_texts_are_never_called_near_duplicates() -> None:
    same = fingerprint("Storm hits Valdmark.")
    assert near_duplicate(same, fingerprint("Storm hits Valdmark.")) is not None  # exact: always
    assert near_duplicate(fingerprint("Storm hits."), fingerprint("Storm hits town hard.")) is None


def test_site_suffix_is_stripped_from_headlines() -> None:
    headline = "Power restored in Valdmark after storm"
    assert clean_headline(f"{headline} | AP News") == headline
    assert clean_headline(f"{headline} - ABC News") == headline
    assert clean_headline("Short | Site") == "Short | Site"


def test_features_fold_the_text_once_with_the_same_result() -> None:
    """``extract_features`` folds the text once for the lede and the fingerprint: the same
    fingerprint and lede as folding in each step (typographic quotes, dashes, nbsp, dateline)."""
    from monitor.stories.features import extract_features, split_lede
    text = ("KYIV, Ukraine (AP) \u2014 Officials said \u201cthe\u00a0truce holds\u201d on Tuesday. "
            "Observers counted 9,000 shells. Talks resume in Istanbul\u2019s old palace on Friday.")
    features = extract_features("a1", "Truce holds | AP News", text)
    alone = fingerprint(text)
    assert features.fingerprint.exact == alone.exact and features.fingerprint.wire_credit
    assert (features.fingerprint.sample == alone.sample).all() and features.fingerprint.words == alone.words
    lede, _ = split_lede(text)
    assert "official" in features.head_terms and "observer" in features.head_terms  # plurals folded
    assert lede.startswith("Officials said \"the truce holds\"")
