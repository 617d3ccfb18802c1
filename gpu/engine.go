// Package gpu is InstructBooth's tensor engine: f32 tensors in wgpu storage
// buffers, one WGSL compute kernel per op and direction, reverse-mode autograd
// on a tape, and AdamW. docs/ARCHITECTURE.md explains the design.
//
// An Engine is not safe for concurrent use: one goroutine records and submits.
package gpu

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"

	"github.com/rajveermalviya/go-webgpu/wgpu"
)

// ErrNoAdapter is returned by Open when no GPU adapter (not even a CPU one)
// exists.
var ErrNoAdapter = errors.New("gpu: no Vulkan/Metal/DX12 adapter found; on Debian/Ubuntu install the Vulkan loader and Mesa's CPU driver: apt-get install libvulkan1 mesa-vulkan-drivers")

// ErrDeviceLost is returned by operations after the GPU device was lost
// (driver reset, GPU removed). Everything on the device is gone; reopen.
var ErrDeviceLost = errors.New("gpu: device lost (driver reset or GPU removed); results since the last readback are invalid")

// AdapterEnv names the environment variable that overrides adapter choice:
// "discrete", "integrated", "cpu", or a case-insensitive substring of the
// adapter's name.
const AdapterEnv = "INSTRUCTBOOTH_ADAPTER"

// Options configure Open.
type Options struct {
	// Adapter overrides the adapter choice (see AdapterEnv). Empty: the
	// environment variable, else discrete > integrated > CPU.
	Adapter string
	// MaxBinding, if nonzero, caps the bytes one storage binding may cover
	// below the device's limit. Tests use it to exercise chunked dispatch.
	MaxBinding uint64
}

// Engine owns a wgpu device and everything allocated on it.
type Engine struct {
	inst    *wgpu.Instance
	adapter *wgpu.Adapter
	dev     *wgpu.Device
	queue   *wgpu.Queue

	Info   AdapterInfo
	Limits wgpu.Limits
	// maxBinding is the most bytes one storage binding may cover.
	maxBinding uint64

	pool      *pool
	pipelines map[string]*pipeline
	rec       *recorder
	slot      mapSlot

	tape     *tape
	noGrad   int
	trackOff int // >0: new tensors join no scope (inside Backward)
	scopes   []*Scope

	lost error
	mu   sync.Mutex // guards Close against finalizers; recording is single-goroutine
}

// AdapterInfo describes the adapter an Engine runs on.
type AdapterInfo struct {
	Name, Driver, Backend, Type string
}

func (a AdapterInfo) String() string {
	return fmt.Sprintf("%s (%s, %s backend, driver %q)", a.Name, a.Type, a.Backend, a.Driver)
}

func typeRank(t wgpu.AdapterType) int {
	switch t {
	case wgpu.AdapterType_DiscreteGPU:
		return 0
	case wgpu.AdapterType_IntegratedGPU:
		return 1
	case wgpu.AdapterType_CPU:
		return 3
	}
	return 4
}

func typeName(t wgpu.AdapterType) string {
	switch t {
	case wgpu.AdapterType_DiscreteGPU:
		return "discrete"
	case wgpu.AdapterType_IntegratedGPU:
		return "integrated"
	case wgpu.AdapterType_CPU:
		return "cpu"
	}
	return "unknown"
}

func backendName(b wgpu.BackendType) string {
	switch b {
	case wgpu.BackendType_Vulkan:
		return "Vulkan"
	case wgpu.BackendType_Metal:
		return "Metal"
	case wgpu.BackendType_D3D12:
		return "DX12"
	case wgpu.BackendType_OpenGL:
		return "OpenGL"
	}
	return "other"
}

// chooseAdapter picks by preference: pref "" sorts by type rank; otherwise a
// type name or a name substring must match.
func chooseAdapter(props []wgpu.AdapterProperties, pref string) (int, error) {
	pref = strings.ToLower(strings.TrimSpace(pref))
	best := -1
	for i, p := range props {
		switch pref {
		case "":
		case "discrete", "integrated", "cpu":
			if typeName(p.AdapterType) != pref {
				continue
			}
		default:
			if !strings.Contains(strings.ToLower(p.Name), pref) {
				continue
			}
		}
		if best < 0 || typeRank(p.AdapterType) < typeRank(props[best].AdapterType) {
			best = i
		}
	}
	if best < 0 {
		names := make([]string, len(props))
		for i, p := range props {
			names[i] = fmt.Sprintf("%q (%s)", p.Name, typeName(p.AdapterType))
		}
		return -1, fmt.Errorf("gpu: no adapter matches %q; available: %s", pref, strings.Join(names, ", "))
	}
	return best, nil
}

// Open creates an Engine on the preferred adapter with the adapter's maximum
// limits.
func Open(opt Options) (*Engine, error) {
	if os.Getenv("XDG_RUNTIME_DIR") == "" {
		os.Setenv("XDG_RUNTIME_DIR", os.TempDir())
	}
	backends := wgpu.InstanceBackend_Vulkan | wgpu.InstanceBackend_Metal | wgpu.InstanceBackend_DX12
	inst := wgpu.CreateInstance(&wgpu.InstanceDescriptor{Backends: backends})
	adapters := inst.EnumerateAdapters(&wgpu.InstanceEnumerateAdapterOptons{Backends: backends})
	if len(adapters) == 0 {
		inst.Release()
		return nil, ErrNoAdapter
	}
	props := make([]wgpu.AdapterProperties, len(adapters))
	for i, a := range adapters {
		props[i] = a.GetProperties()
	}
	pref := opt.Adapter
	if pref == "" {
		pref = os.Getenv(AdapterEnv)
	}
	pick, err := chooseAdapter(props, pref)
	if err != nil {
		inst.Release()
		return nil, err
	}
	for i, a := range adapters {
		if i != pick {
			a.Release()
		}
	}
	ad := adapters[pick]
	limits := ad.GetLimits().Limits
	// Compute-only device: render limits the wrapper does not round-trip are
	// irrelevant, so the adapter's own maxima can be requested as they are.
	dev, err := ad.RequestDevice(&wgpu.DeviceDescriptor{
		Label:          "instructbooth",
		RequiredLimits: &wgpu.RequiredLimits{Limits: limits},
	})
	if err != nil {
		ad.Release()
		inst.Release()
		return nil, fmt.Errorf("gpu: requesting a device on %q with its maximum limits: %w", props[pick].Name, err)
	}
	e := &Engine{
		inst: inst, adapter: ad, dev: dev, queue: dev.GetQueue(),
		Limits:    dev.GetLimits().Limits,
		pipelines: map[string]*pipeline{},
		slot:      newMapSlot(),
		Info: AdapterInfo{
			Name: props[pick].Name, Driver: props[pick].DriverDescription,
			Backend: backendName(props[pick].BackendType), Type: typeName(props[pick].AdapterType),
		},
	}
	e.maxBinding = e.Limits.MaxStorageBufferBindingSize
	if opt.MaxBinding != 0 && opt.MaxBinding < e.maxBinding {
		e.maxBinding = opt.MaxBinding
	}
	e.maxBinding &^= 255
	e.pool = newPool(e)
	e.rec = newRecorder(e)
	return e, nil
}

// MaxBinding is the most bytes one storage binding may cover.
func (e *Engine) MaxBinding() uint64 { return e.maxBinding }

// Close releases every GPU object. Tensors of this Engine become invalid.
func (e *Engine) Close() {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.dev == nil {
		return
	}
	if e.lost == nil {
		_ = e.Sync()
	}
	e.rec.release()
	for _, p := range e.pipelines {
		p.release()
	}
	e.pool.releaseAll()
	e.slot.free()
	e.queue.Release()
	e.dev.Release()
	e.adapter.Release()
	e.inst.Release()
	e.dev = nil
}

// Sync submits all recorded work and waits for the GPU to finish it.
func (e *Engine) Sync() error {
	if err := e.rec.flush(); err != nil {
		return err
	}
	// wgpu 0.17's blocking poll gives up after 5 s; poll until the queue
	// is really empty.
	for !e.dev.Poll(true, nil) {
		if e.lost != nil {
			break
		}
	}
	return e.lost
}

func errorf(format string, args ...any) error { return fmt.Errorf("gpu: "+format, args...) }

// Err returns the first asynchronous error (validation, device loss) seen.
func (e *Engine) Err() error { return e.lost }
