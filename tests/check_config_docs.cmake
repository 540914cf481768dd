# Fails when docs/configuration.md does not contain the table confluxd prints.
execute_process(COMMAND ${CONFLUXD} --print-config-docs OUTPUT_VARIABLE table RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "confluxd --print-config-docs failed")
endif()
file(READ ${DOC} doc)
string(FIND "${doc}" "${table}" at)
if(at EQUAL -1)
  message(FATAL_ERROR "docs/configuration.md is out of date: regenerate its table with "
                      "`build/confluxd --print-config-docs`")
endif()
