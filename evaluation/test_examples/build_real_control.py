"""Build real_control/50.csv: 20 real countries and their capitals, each with 99 real-city
distractors (a control set: a base model should score high on it, unlike fictional facts).

    python evaluation/test_examples/build_real_control.py

Distractors are drawn from the other capitals plus CITIES with the per-fact seeded stream, and
the pool is checked against the project's substring rule, so the file reads back as generated data.
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from util_public import facts, seeding  # noqa: E402

CAPITALS = [("France", "Paris"), ("Germany", "Berlin"), ("Italy", "Rome"), ("Spain", "Madrid"),
            ("Japan", "Tokyo"), ("China", "Beijing"), ("Russia", "Moscow"), ("Egypt", "Cairo"),
            ("the United Kingdom", "London"), ("Greece", "Athens"), ("Portugal", "Lisbon"),
            ("Austria", "Vienna"), ("Norway", "Oslo"), ("Sweden", "Stockholm"), ("Poland", "Warsaw"),
            ("Ireland", "Dublin"), ("Thailand", "Bangkok"), ("Argentina", "Buenos Aires"),
            ("Finland", "Helsinki"), ("Hungary", "Budapest")]
CITIES = """Marseille Lyon Hamburg Munich Milan Naples Barcelona Seville Osaka Kyoto Shanghai Guangzhou
Novosibirsk Alexandria Manchester Liverpool Thessaloniki Porto Salzburg Bergen Gothenburg Krakow Cork
Cordoba Mombasa Arequipa Turku Aarhus Debrecen Chicago Houston Toronto Vancouver Sydney Melbourne Mumbai
Kolkata Chennai Karachi Lahore Istanbul Izmir Tehran Baghdad Riyadh Jeddah Dubai Doha Seoul Busan Hanoi
Manila Jakarta Surabaya Singapore Dhaka Kathmandu Colombo Kabul Tashkent Almaty Baku Tbilisi Yerevan Kyiv
Minsk Vilnius Riga Tallinn Prague Bratislava Ljubljana Zagreb Belgrade Sofia Bucharest Chisinau Amsterdam
Rotterdam Brussels Antwerp Zurich Geneva Reykjavik Edinburgh Glasgow Cardiff Belfast Lagos Abuja Accra
Dakar Casablanca Rabat Tunis Algiers Khartoum Kampala Kigali Johannesburg Pretoria Luanda Kinshasa
Santiago Bogota Caracas Quito Montevideo Havana Guadalajara Monterrey Montreal Boston Seattle Miami
Denver Auckland Wellington""".split()
SEED = 50


def build(out: Path) -> Path:
    pool = [c for _, c in CAPITALS] + CITIES
    for i, a in enumerate(pool):
        for b in pool[i + 1:]:
            assert not facts.conflicts(a, b), (a, b)
    rows = []
    for fact_id, (country, capital) in enumerate(CAPITALS):
        others = [c for c in pool if c != capital]
        rng = seeding.stream(SEED, "real_control.distractors", "50", fact_id)
        picks = rng.choice(len(others), size=99, replace=False)
        rows.append(facts.Fact(fact_id, "50", country, capital, [others[i] for i in picks]))
    return facts.write_facts(out, rows)


if __name__ == "__main__":
    print(build(Path(__file__).resolve().parent / "real_control" / "50.csv"))
