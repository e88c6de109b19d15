"""Facts (subject, answer) per relation from pycountry, and question templates.

The last template(s) of each relation are held out for validation, so held-out
accuracy measures recall of a known fact under an unseen phrasing.
"""

from __future__ import annotations

import re
from collections import defaultdict

import pycountry

TEMPLATES: dict[str, list[str]] = {
    "country_alpha2": [
        "What is the two-letter country code of {}?",
        "Which ISO 3166-1 alpha-2 code does {} have?",
        "{} has which two-letter ISO code?",
        "What is the alpha-2 code for {}?",
    ],
    "country_alpha3": [
        "What is the three-letter country code of {}?",
        "Which ISO 3166-1 alpha-3 code does {} have?",
        "{} has which three-letter ISO code?",
        "What is the alpha-3 code for {}?",
    ],
    "alpha3_country": [
        "Which country has the ISO code {}?",
        "The alpha-3 code {} belongs to which country?",
        "What country does the three-letter code {} stand for?",
        "Name the country whose ISO 3166 alpha-3 code is {}.",
    ],
    "country_official_name": [
        "What is the official name of {}?",
        "What is {} officially called?",
        "Give the full official name of {}.",
        "By what official name is {} known?",
    ],
    "subdivision_country": [
        "In which country is {}?",
        "Which country does the subdivision {} belong to?",
        "{} is a subdivision of which country?",
        "What country contains the region {}?",
    ],
    "subdivision_type": [
        "What type of subdivision is {}?",
        "What kind of administrative division is {}?",
        "{} is classified as what type of region?",
        "What is the administrative category of {}?",
    ],
}


def _country_name(c) -> str:
    return getattr(c, "common_name", c.name)  # "Bolivia", not "Bolivia, Plurinational State of"


def _subdivision_name(s) -> str:
    return re.sub(r"\s*\[[^\]]*\]", "", s.name)  # drop bracketed alternatives: "Lleida [Lérida]"


def _raw_pairs(relation: str) -> list[tuple[str, str]]:
    countries = list(pycountry.countries)
    if relation == "country_alpha2":
        return [(_country_name(c), c.alpha_2) for c in countries]
    if relation == "country_alpha3":
        return [(_country_name(c), c.alpha_3) for c in countries]
    if relation == "alpha3_country":
        return [(c.alpha_3, _country_name(c)) for c in countries]
    if relation == "country_official_name":
        return [(_country_name(c), c.official_name) for c in countries if hasattr(c, "official_name")]
    by_code = {c.alpha_2: _country_name(c) for c in countries}
    if relation == "subdivision_country":
        return [(_subdivision_name(s), by_code[s.country_code]) for s in pycountry.subdivisions]
    if relation == "subdivision_type":
        return [(_subdivision_name(s), s.type) for s in pycountry.subdivisions]
    raise KeyError(relation)


def facts(relation: str) -> list[tuple[str, str]]:
    """Unambiguous (subject, answer) pairs, sorted: a subject with two different
    answers (e.g. "Limburg" in Belgium and the Netherlands) is dropped."""
    answers = defaultdict(set)
    for subject, answer in _raw_pairs(relation):
        answers[subject].add(answer)
    return sorted((s, a.pop()) for s, a in answers.items() if len(a) == 1)
