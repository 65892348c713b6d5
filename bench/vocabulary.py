"""Words the benchmarks build their invented documents, passages and questions from."""

WORDS = (
    "battery warranty shipping invoice refund customer order drill motor charger delivery "
    "service manual safety voltage torque engine filter pump valve pressure sensor display "
    "account password network router cable printer storage backup server license update "
    "river mountain forest harbour bridge tower museum garden library station market school"
).split()
