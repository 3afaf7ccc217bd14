"""Short documents the demo turns into PDFs: one list of pages per file, written for colprune."""

DOCUMENTS = {
    "thermometry.pdf": [
        "Daniel Gabriel Fahrenheit was a physicist and instrument maker. He built the first reliable "
        "mercury thermometer in 1714 and proposed the temperature scale that carries his name in 1724.",
        "Anders Celsius, a Swedish astronomer, proposed a centigrade scale in 1742 with one hundred "
        "degrees between the freezing and boiling points of water.",
        "A thermocouple measures temperature from the voltage that appears where two different metals "
        "meet; it is cheap, robust and works from cryogenic to furnace temperatures.",
        "Infrared thermometers read the thermal radiation an object emits, so they measure surface "
        "temperature without contact.",
    ],
    "cells.pdf": [
        "Mitochondria produce most of a cell's supply of adenosine triphosphate, the molecule that "
        "carries chemical energy, which is why they are called the powerhouse of the cell.",
        "Ribosomes translate messenger RNA into proteins by linking amino acids in the order the "
        "codons specify.",
        "Chloroplasts in plant cells capture light energy and convert carbon dioxide and water into "
        "sugar during photosynthesis, releasing oxygen.",
        "The cell membrane is a lipid bilayer that controls which substances enter and leave the cell.",
    ],
    "rivers.pdf": [
        "The Nile flows north through eleven countries and empties into the Mediterranean Sea; for "
        "centuries its yearly flood watered the fields of Egypt.",
        "The Amazon carries more water than any other river, about a fifth of all the fresh water that "
        "rivers deliver to the oceans.",
        "The Danube passes through four capital cities: Vienna, Bratislava, Budapest and Belgrade.",
        "A river delta forms where a river deposits sediment as it slows down entering a lake or the sea.",
    ],
    "computing.pdf": [
        "A hash table stores key and value pairs and finds a key in constant expected time by "
        "computing an index from the key's hash.",
        "Late interaction retrievers such as ColBERT and ColPali keep one vector per token or image "
        "patch and score a query by summing, over query tokens, the best matching document vector.",
        "Quantisation stores numbers with fewer bits, for example eight-bit integers instead of "
        "thirty-two-bit floats, trading a little accuracy for four times less memory.",
        "HDF5 is a file format for large numerical arrays organised in groups and datasets, with "
        "chunked storage that can grow as data is appended.",
    ],
}

QUERIES = [
    ("who invented the mercury thermometer", "thermometry.pdf#1"),
    ("which organelle makes the energy of the cell", "cells.pdf#1"),
    ("river flowing through Vienna and Budapest", "rivers.pdf#3"),
    ("how do late interaction models score documents", "computing.pdf#2"),
]
