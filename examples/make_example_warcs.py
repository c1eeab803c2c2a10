"""Write a few small WARC files for the offline example (`jobs/example-local.yaml`) and tests.

    python examples/make_example_warcs.py [OUT_DIR] [--files N]

The pages are English articles with long paragraphs (so FineWeb's filters keep
them), plus what a real crawl also holds: an exact mirror of two articles on
other hosts (MinHash dedup removes them), a German page (language filter), a
short navigation page (quality filters) and a non-HTML response. Everything is
deterministic: record ids, dates and file contents depend only on the arguments.
`shammie run jobs/example-local.yaml` calls this itself when examples/warc/ is missing.
"""

from __future__ import annotations

import argparse
import html
import io
import os
import uuid

SNAPSHOT = "CC-MAIN-2024-22"
DATE = "2024-05-20T10:00:00Z"

ARTICLES = {
    "https://www.kitchen-notebook.org/bread/sourdough-starter": (
        "Keeping a sourdough starter alive",
        [
            "A sourdough starter is nothing more than flour and water that has been left long enough for wild yeast and lactic acid bacteria to settle in. "
            "Most bakers begin with equal weights of whole wheat flour and lukewarm water, stir the paste in a clean jar, and cover it loosely so that gas can escape. "
            "During the first two days very little seems to happen, and many beginners give up at exactly this point.",
            "The third and fourth days are usually the most dramatic. The mixture rises, smells sharply of vinegar or even nail polish, and then collapses again. "
            "This is a sign that the bacterial population is changing, not that the culture has failed. "
            "Discard most of it each morning, feed the remainder with fresh flour and water, and keep the jar somewhere that stays close to room temperature.",
            "After roughly a week a healthy starter doubles in size within six to eight hours of a feeding and smells pleasantly sour, a little like yogurt. "
            "At that stage it is ready for a first loaf. "
            "If you bake only on weekends, the starter can live in the refrigerator between bakes and needs a feeding only once a week.",
            "Bakers who keep records of temperature, feeding ratio and rise time learn far more than those who follow a recipe blindly. "
            "A warm kitchen speeds everything up, while a cold one gives a slower rise and a more acidic flavour, and both can produce excellent bread.",
        ],
    ),
    "https://skywatchers-journal.net/guides/first-night-with-a-telescope": (
        "Your first night with a small telescope",
        [
            "The most common mistake with a new telescope is to carry it outside and start observing immediately. "
            "Glass and metal that were warm indoors disturb the air inside the tube, and for the first half hour every star looks like a shimmering blob. "
            "Set the instrument up early in the evening and let it cool while you learn the brightest constellations by eye.",
            "The Moon is the best first target because it is bright, large and easy to find. "
            "Look along the terminator, the line between the lit and the dark part of the disk, where long shadows make craters and mountain ranges stand out in relief. "
            "Using the lowest magnification eyepiece first makes it much easier to centre any object.",
            "Once you are comfortable, try the planets. Jupiter shows its four large moons even in a modest instrument, and their positions change from one night to the next. "
            "Saturn and its rings are unforgettable the first time you see them, although the image is small and you will need patience while the air steadies.",
            "Keep a simple notebook with the date, the time, the sky conditions and a sketch of what you saw. "
            "Sketching forces the eye to notice faint detail, and over a season the notebook becomes a record of how your observing skills have grown.",
        ],
    ),
    "https://greenplot-gardening.com/soil/making-compost": (
        "Making compost that actually breaks down",
        [
            "Good compost depends on a balance between materials rich in nitrogen, such as grass clippings and vegetable scraps, and materials rich in carbon, such as dry leaves, straw and shredded cardboard. "
            "A pile that is mostly green turns slimy and smells of ammonia, while a pile that is mostly brown simply sits there for years without changing.",
            "Moisture matters as much as the mixture. The heap should feel like a wrung-out sponge when you squeeze a handful of it. "
            "In dry weather water each new layer as you add it, and in wet weather cover the top with an old carpet or a tarp so that rain does not wash the nutrients away.",
            "Turning the pile every week or two brings oxygen to the microbes that do the work, and a well built heap can become warm enough to steam on a cold morning. "
            "That heat kills many weed seeds and speeds the process, so that finished compost can be ready in two or three months rather than a year.",
            "Finished compost is dark, crumbly and smells of a forest floor. Spread it thinly over beds in autumn and let worms carry it into the soil during the winter, "
            "which improves the structure of heavy clay and helps sandy ground hold water through the summer.",
        ],
    ),
    "https://history-desk.org/articles/printing-press-and-europe": (
        "How the printing press changed Europe",
        [
            "Before the middle of the fifteenth century almost every book in Europe was copied by hand, and a single bible could take a scribe more than a year to complete. "
            "Books were therefore rare and expensive, and most people never owned one. "
            "The introduction of movable metal type in the German city of Mainz changed the economics of knowledge within a few decades.",
            "Printers quickly spread along the trade routes of the continent, and by the year 1500 presses were working in more than two hundred towns. "
            "Historians estimate that millions of volumes had been produced by then, far more than all the scribes of the previous centuries had written together.",
            "Cheap printed pamphlets allowed arguments about religion and politics to travel faster than the authorities could answer them. "
            "At the same time scholars could compare identical copies of a text, correct errors in later editions and build on each other's work, which was essential for the growth of modern science.",
            "The press also encouraged the standardisation of spelling and grammar, since printers preferred forms that would sell in the widest possible market. "
            "Many features of modern written languages can be traced back to decisions made in busy print shops during this period.",
        ],
    ),
    "https://ridewell-bikes.co.uk/workshop/adjusting-brakes": (
        "Adjusting rim brakes at home",
        [
            "Rim brakes are simple machines, and most of the problems that riders notice can be fixed with a set of hex keys and a little patience. "
            "Before touching any adjustment, spin the wheel and check that it runs true, because a buckled rim will rub against the pads no matter how carefully they are set.",
            "Each brake pad should meet the braking surface squarely, with its front edge touching the rim slightly before the rear edge. "
            "This small angle, often called toe-in, prevents the squeal that many riders find so annoying. "
            "Loosen the pad bolt, hold the pad in position and tighten it again while squeezing the lever.",
            "If the lever travels too far before the brake bites, turn the barrel adjuster where the cable enters the caliper to take up the slack. "
            "When the adjuster runs out of thread, screw it back in, loosen the cable clamp, pull the cable a few millimetres tighter and clamp it again.",
            "Finally, test the brakes while walking beside the bicycle before you ride it. "
            "Pads wear faster in wet and gritty conditions, so check their grooves every few weeks and replace them before the metal backing can damage the rim.",
        ],
    ),
    "https://riverwatch-society.org/learn/how-rivers-shape-valleys": (
        "How rivers shape their valleys",
        [
            "A river is always carrying material from higher ground towards the sea, and the work it does depends on the speed of the water and the load it transports. "
            "Near its source a mountain stream is steep and fast, and it cuts downwards into the rock, which produces narrow valleys with steep sides.",
            "Further downstream the slope becomes gentler and the river begins to swing from side to side. "
            "Water moves faster on the outside of each bend and erodes the bank, while slower water on the inside drops sand and gravel. "
            "Over many years these meanders migrate across the valley floor and widen it.",
            "During floods the river spreads over its plain and leaves a thin layer of fine silt behind. "
            "Repeated floods build some of the most fertile farmland in the world, which is why so many early farming communities settled close to large rivers despite the danger.",
            "Where the river finally meets the sea it slows down completely and deposits the rest of its load. "
            "Depending on the strength of the tides and waves, this material forms a delta that grows outwards or is carried away along the coast.",
        ],
    ),
}

# The same article served by another host: an exact duplicate for MinHash to remove.
MIRRORS = {
    "https://bread-recipes-mirror.info/sourdough-starter.html": "https://www.kitchen-notebook.org/bread/sourdough-starter",
    "https://astro-feed.example.com/2024/05/telescope-first-night": "https://skywatchers-journal.net/guides/first-night-with-a-telescope",
}

GERMAN = (
    "https://www.wanderfreunde.de/touren/schwarzwald",
    "Eine Wanderung durch den Schwarzwald",
    [
        "Der Schwarzwald gehört zu den beliebtesten Wandergebieten in Deutschland, und das nicht ohne Grund. "
        "Dichte Tannenwälder, klare Bäche und kleine Dörfer mit alten Bauernhäusern wechseln sich auf engem Raum ab. "
        "Wer früh am Morgen aufbricht, hat die schmalen Pfade oft ganz für sich allein und hört nur das Rauschen der Bäume.",
        "Für die erste Tour empfiehlt sich ein Rundweg von etwa fünfzehn Kilometern, der an einem Aussichtsturm vorbeiführt. "
        "Feste Schuhe, ausreichend Wasser und eine Regenjacke sollten immer im Rucksack sein, denn das Wetter in den Bergen ändert sich schnell.",
    ],
)

NAVIGATION = ("https://www.kitchen-notebook.org/", "Kitchen Notebook", ["Home", "Recipes", "About", "Contact"])


def page_html(title: str, paragraphs: list[str]) -> bytes:
    body = "\n".join(f"<p>{html.escape(p)}</p>" for p in paragraphs)
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        f"<title>{html.escape(title)}</title></head>\n<body>\n"
        "<nav><a href=\"/\">Home</a> <a href=\"/archive\">Archive</a></nav>\n"
        f"<article><h1>{html.escape(title)}</h1>\n{body}\n</article>\n"
        "<footer>Copyright 2024</footer>\n</body></html>\n"
    ).encode("utf-8")


def example_pages() -> list[tuple[str, str, bytes]]:
    """(url, content type, body) for every record, in a fixed order."""
    pages = [(url, "text/html; charset=utf-8", page_html(title, paras)) for url, (title, paras) in ARTICLES.items()]
    for url, source in MIRRORS.items():
        title, paras = ARTICLES[source]
        pages.append((url, "text/html; charset=utf-8", page_html(title, paras)))
    pages.append((GERMAN[0], "text/html; charset=utf-8", page_html(GERMAN[1], GERMAN[2]).replace(b'lang="en"', b'lang="de"')))
    url, title, links = NAVIGATION
    nav = "".join(f"<li><a href=\"/{link.lower()}\">{link}</a></li>" for link in links)
    pages.append((url, "text/html; charset=utf-8",
                  f"<html><head><title>{title}</title></head><body><ul>{nav}</ul></body></html>".encode()))
    pages.append(("https://www.kitchen-notebook.org/robots.txt", "text/plain", b"User-agent: *\nDisallow:\n"))
    return pages


def write_example_warcs(out_dir: str, files: int = 3) -> list[str]:
    """Write `files` gzipped WARCs (records dealt round-robin); return their paths."""
    from warcio.statusandheaders import StatusAndHeaders
    from warcio.warcwriter import WARCWriter

    os.makedirs(out_dir, exist_ok=True)
    pages = example_pages()
    paths = []
    for n in range(files):
        path = os.path.join(out_dir, f"example-{SNAPSHOT}-{n:05d}.warc.gz")
        tmp = path + ".tmp"
        with open(tmp, "wb") as f:
            writer = WARCWriter(f, gzip=True)
            for url, content_type, body in pages[n::files]:
                http = StatusAndHeaders("200 OK", [("Content-Type", content_type),
                                                   ("Content-Length", str(len(body)))], protocol="HTTP/1.1")
                record_id = f"<urn:uuid:{uuid.uuid5(uuid.NAMESPACE_URL, url)}>"
                record = writer.create_warc_record(
                    url, "response", payload=io.BytesIO(body), http_headers=http,
                    warc_headers_dict={"WARC-Record-ID": record_id, "WARC-Date": DATE,
                                       "WARC-Identified-Payload-Type": content_type.split(";")[0]},
                )
                writer.write_record(record)
        os.replace(tmp, path)
        paths.append(path)
    return paths


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out_dir", nargs="?", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "warc"))
    parser.add_argument("--files", type=int, default=3, help="number of WARC files to spread the pages over")
    args = parser.parse_args()
    for path in write_example_warcs(args.out_dir, args.files):
        print(path)


if __name__ == "__main__":
    main()
