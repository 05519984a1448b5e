// TEMPORARY: replaced by the CPU ops.
#include "tape.h"
void ops_cpu_register(void) {}
