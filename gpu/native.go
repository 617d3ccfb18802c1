package gpu

// This file holds the engine's own cgo bridge for buffer mapping.
//
// go-webgpu v0.17.1 passes &handle (a pointer to a Go variable holding a
// cgo.Handle) as the C userdata of wgpuBufferMapAsync. The C side keeps that
// pointer until wgpuDevicePoll runs the callback; a garbage collection in
// between can move or free the variable and the callback then panics with
// "misuse of an invalid Handle". We avoid Go pointers altogether: the
// userdata is a pointer into C memory (malloc'd once per Engine) where the C
// callback stores the status. No Go value is ever reachable from C, so GC
// timing cannot matter. The symbols resolve from the wgpu-native library that
// go-webgpu already links; the prototypes below mirror lib/webgpu.h and
// lib/wgpu.h of that module, with opaque handles as void*.

/*
#include <stdint.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdlib.h>
#include <time.h>

typedef struct { void *queue; uint64_t submissionIndex; } ib_wrapped_index;
typedef void (*ib_map_cb)(uint32_t status, void *userdata);

extern void wgpuBufferMapAsync(void *buffer, uint32_t mode, size_t offset, size_t size, ib_map_cb cb, void *userdata);
extern bool wgpuDevicePoll(void *device, bool wait, const ib_wrapped_index *idx);

// The slot the callback writes: -1 while pending, else the status.
static void ib_map_done(uint32_t status, void *userdata) {
	*(volatile int32_t *)userdata = (int32_t)status;
}

static int32_t *ib_new_slot(void) { return (int32_t *)malloc(sizeof(int32_t)); }

// ib_map_read maps [offset, offset+size) of buffer for reading and waits for
// submission idx on queue. It returns the map status (0 = success), or -1 if
// the callback never ran.
// It never uses wgpu's blocking wait: wgpu 0.17 gives up on that after
// 5 s and then treats the submission as finished, so a readback of a batch
// that runs longer would see stale data (and the driver could crash when
// resources still in use are freed). Instead it polls without waiting,
// sleeping between polls with exponential backoff (1 us to 1 ms), until the
// map callback has run.
static int32_t ib_map_read(void *device, void *queue, uint64_t idx, void *buffer,
                           size_t offset, size_t size, int32_t *slot) {
	(void)queue; (void)idx;
	*slot = -1;
	wgpuBufferMapAsync(buffer, 1 , offset, size, ib_map_done, slot);
	long pause = 1000; // ns
	while (*(volatile int32_t *)slot == -1) {
		wgpuDevicePoll(device, false, NULL);
		if (*(volatile int32_t *)slot != -1) break;
		struct timespec ts = { 0, pause };
		nanosleep(&ts, NULL);
		if (pause < 1000000) pause *= 2;
	}
	return *(volatile int32_t *)slot;
}
*/
import "C"

import (
	"fmt"
	"unsafe"

	"github.com/rajveermalviya/go-webgpu/wgpu"
)

// Raw handle extraction relies on go-webgpu v0.17.1's struct layouts:
// Device{ref}, Queue{deviceRef, ref}, Buffer{deviceRef, ref}.
type rawDevice struct{ ref unsafe.Pointer }
type rawPair struct{ deviceRef, ref unsafe.Pointer }

func rawDev(d *wgpu.Device) unsafe.Pointer  { return (*rawDevice)(unsafe.Pointer(d)).ref }
func rawQueue(q *wgpu.Queue) unsafe.Pointer { return (*rawPair)(unsafe.Pointer(q)).ref }
func rawBuf(b *wgpu.Buffer) unsafe.Pointer  { return (*rawPair)(unsafe.Pointer(b)).ref }

// mapSlot is C memory that receives a map callback's status.
type mapSlot struct{ p *C.int32_t }

func newMapSlot() mapSlot { return mapSlot{C.ib_new_slot()} }
func (s mapSlot) free()   { C.free(unsafe.Pointer(s.p)) }

// Map status codes from webgpu.h.
var mapStatusText = map[int32]string{
	1: "validation error",
	2: "unknown error",
	3: "device lost",
	4: "buffer destroyed before callback",
	5: "buffer unmapped before callback",
	6: "mapping already pending",
	7: "offset out of range",
	8: "size out of range",
}

// mapRead maps a staging buffer after submission idx completes. On success
// the caller must read GetMappedRange and Unmap.
func mapRead(dev *wgpu.Device, q *wgpu.Queue, idx wgpu.SubmissionIndex, b *wgpu.Buffer, off, size uint64, slot mapSlot) error {
	st := C.ib_map_read(rawDev(dev), rawQueue(q), C.uint64_t(idx), rawBuf(b), C.size_t(off), C.size_t(size), slot.p)
	if st != 0 {
		if int32(st) == 3 {
			return ErrDeviceLost
		}
		return fmt.Errorf("gpu: readback failed: %s (status %d)", mapStatusText[int32(st)], int32(st))
	}
	return nil
}
