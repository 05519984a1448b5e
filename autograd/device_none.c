// Device stand-in for builds without CUDA: every GPU request is a clear error.
#include "device.h"
#include "util.h"

bool device_cuda_available(void) { return false; }
const char *device_cuda_name(void) { return ""; }
static _Noreturn void no_cuda(void) { fatal("this vnmtune was built without CUDA (VNMTUNE_CUDA=OFF)"); }
void *device_malloc(size_t bytes) { (void)bytes; no_cuda(); }
void device_free(void *p) { (void)p; }
void device_memset0(void *p, size_t bytes) { (void)p; (void)bytes; no_cuda(); }
void device_copy_h2d(void *d, const void *s, size_t n) { (void)d; (void)s; (void)n; no_cuda(); }
void device_copy_d2h(void *d, const void *s, size_t n) { (void)d; (void)s; (void)n; no_cuda(); }
void device_copy_d2d(void *d, const void *s, size_t n) { (void)d; (void)s; (void)n; no_cuda(); }
void device_synchronize(void) {}
void device_i32_add(void *p, int v) { (void)p, (void)v; no_cuda(); }
void device_graph_begin(void) { no_cuda(); }
DeviceGraph *device_graph_end(void) { no_cuda(); }
void device_graph_launch(DeviceGraph *g) { (void)g; no_cuda(); }
void device_graph_free(DeviceGraph *g) { (void)g; }
bool device_graph_recording(void) { return false; }
