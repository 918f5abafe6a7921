"""Files to import that tests share."""

# Readable, so an upload is accepted (202); one good row and six rows the checks reject.
BROKEN_CSV = """lon,lat,objname,class_code,objcode
118.2101,33.9101,good bin,0305,
118.2102,not-a-number,bad latitude,0305,
118.2103,33.9103,unknown class,0999,
118.2104,33.9104,bad code,0305,32130203050000
,,no coordinates,0305,
118.2105,33.9105,wrong county,0305,9999990305000001
118.2106,33.9106,too,many,fields,here
"""

