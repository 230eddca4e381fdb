"""The built-in manufacturer aliases (loaded by a data migration; editable in the admin).

Each organization can add its own in the admin; they win over these.
"""

from __future__ import annotations

BUILT_IN: dict[str, tuple[str, ...]] = {
    "Texas Instruments": (
        "TI",
        "Texas",
        "Texas Instr",
        "Texas Instruments Inc",
        "National Semiconductor",
        "Burr-Brown",
    ),
    "onsemi": ("ON Semiconductor", "ON Semi", "ON", "Fairchild", "Fairchild Semiconductor"),
    "Analog Devices": (
        "ADI",
        "Analog Devices Inc",
        "Linear Technology",
        "Linear Tech",
        "LTC",
        "Maxim",
        "Maxim Integrated",
    ),
    "STMicroelectronics": ("ST", "STM", "ST Micro", "ST Microelectronics"),
    "NXP": ("NXP Semiconductors", "Freescale", "Philips Semiconductors"),
    "Nexperia": ("Nexperia USA", "Nexperia B.V."),
    "Microchip": ("Microchip Technology", "MCHP", "Atmel", "Microsemi"),
    "Infineon": (
        "Infineon Technologies",
        "International Rectifier",
        "IR",
        "Cypress",
        "Cypress Semiconductor",
    ),
    "Renesas": ("Renesas Electronics", "Intersil", "IDT", "Dialog Semiconductor"),
    "Vishay": (
        "Vishay Intertechnology",
        "Vishay Dale",
        "Vishay Siliconix",
        "Vishay Semiconductors",
    ),
    "Yageo": ("Yageo Corporation", "Phycomp"),
    "Murata": ("Murata Manufacturing", "Murata Electronics"),
    "TDK": ("TDK Corporation", "EPCOS"),
    "KEMET": ("Kemet Electronics",),
    "Panasonic": ("Panasonic Electronic Components", "Panasonic Industrial"),
    "Diodes Incorporated": ("Diodes", "Diodes Inc", "Zetex"),
    "Littelfuse": ("Littelfuse Inc",),
    "ROHM": ("ROHM Semiconductor", "Rohm"),
    "Toshiba": ("Toshiba Semiconductor", "Toshiba Electronic Devices"),
    "Samsung Electro-Mechanics": ("Samsung", "SEMCO"),
    "TE Connectivity": ("TE", "Tyco", "Tyco Electronics", "AMP"),
    "Molex": ("Molex LLC",),
    "Würth Elektronik": ("Wurth", "Wurth Elektronik", "Würth", "WE"),
    "Bourns": ("Bourns Inc",),
}
