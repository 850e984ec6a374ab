# Fails unless README.md contains each example file verbatim.
file(READ "${README}" readme)
foreach(example IN ITEMS "${EXAMPLE_C}" "${EXAMPLE_PY}")
  file(READ "${example}" text)
  string(FIND "${readme}" "${text}" at)
  if(at EQUAL -1)
    message(FATAL_ERROR "README.md does not contain ${example} verbatim; copy it in again")
  endif()
endforeach()
