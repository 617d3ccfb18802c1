// Package torchpt reads PyTorch checkpoints (.pt, .pth, .bin, .ckpt written
// by torch.save) without running any code from them.
//
// Two layouts are read:
//   - the zip archive of torch >= 1.6: <root>/data.pkl (a pickle) and one
//     record <root>/data/<key> of raw little-endian bytes per storage;
//   - the legacy stream of older torch: five pickles (magic number,
//     protocol version, system info, the object, the storage keys) followed
//     by each storage as an int64 element count and its bytes.
//
// The pickle is interpreted by a restricted machine (pickle.go) that only
// builds plain data and resolves a fixed set of globals: collections.
// OrderedDict, the torch.*Storage types and torch._utils._rebuild_tensor(_v2) /
// _rebuild_parameter(_with_state). Any other global (os.system,
// builtins.eval, ...), any call of something else and the opcodes that
// instantiate arbitrary classes are refused with a *GlobalError or an error
// naming the file; nothing is executed. This is what
// torch.load(weights_only=True) accepts, minus the rarer types.
//
// The result is shaped like model/safetensors': names, dtype, shape and the
// data converted to float32 (or int64). Tensors are collected from the
// pickled object: a dict of tensors (a state_dict) gives its keys; nested
// dicts give dotted keys ("state_dict.encoder.weight", "teacher.norm.bias");
// values that are not tensors or dicts (epochs, argument lists, None) are
// skipped. Every tensor view is validated against its storage at Open
// (offset, shape and strides must stay inside it, a view may not have more
// elements than its storage; storage sizes must match the archive records),
// so reads never go out of bounds and no claim in the file can force an
// allocation larger than the file. Non-contiguous views
// and views sharing a storage are materialised element by element.
package torchpt

import (
	"archive/zip"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"sort"
	"strconv"
	"strings"

	"github.com/instructbooth/instructbooth/model/safetensors"
)

// ErrFormat is wrapped by every error about a malformed or refused file.
var ErrFormat = errors.New("invalid torch checkpoint")

// MaxPickle bounds the data.pkl record (torch's are kilobytes to a few MB).
const MaxPickle = 256 << 20

type dtype = safetensors.DType

const (
	dtF32  = safetensors.F32
	dtF64  = safetensors.F64
	dtF16  = safetensors.F16
	dtBF16 = safetensors.BF16
	dtI64  = safetensors.I64
	dtI32  = safetensors.I32
	dtI16  = safetensors.I16
	dtI8   = safetensors.I8
	dtU8   = safetensors.U8
	dtBool = safetensors.Bool
)

// storage is a storage's bytes in the file.
type storage struct {
	ref *storageRef
	// off is the absolute offset of the raw bytes (stored records and the
	// legacy layout); zf is set instead for a compressed zip record.
	off int64
	zf  *zip.File
}

type entry struct {
	info   safetensors.Info
	st     *storage
	offset int64
	stride []int64
}

// File is an open torch checkpoint. Methods are safe for concurrent use.
type File struct {
	Path string
	// Legacy reports the pre-1.6 stream layout.
	Legacy bool
	// Skipped lists the dotted keys of pickled values that were neither
	// tensors nor dicts (e.g. "epoch", "args").
	Skipped []string

	r        io.ReaderAt
	size     int64
	closer   io.Closer
	tensors  map[string]*entry
	names    []string
	storages map[string]*storage // by key, filled while unpickling
}

func (f *File) errorf(format string, args ...any) error {
	return fmt.Errorf("%s: %w: %s", f.Path, ErrFormat, fmt.Sprintf(format, args...))
}

// Open opens and validates a torch checkpoint.
func Open(path string) (*File, error) {
	fh, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	st, err := fh.Stat()
	if err != nil {
		fh.Close()
		return nil, err
	}
	f, err := Parse(fh, st.Size(), path)
	if err != nil {
		fh.Close()
		return nil, err
	}
	f.closer = fh
	return f, nil
}

// Close closes the underlying file.
func (f *File) Close() error {
	if f.closer != nil {
		return f.closer.Close()
	}
	return nil
}

// Parse reads a checkpoint of the given size from r; name labels errors.
func Parse(r io.ReaderAt, size int64, name string) (*File, error) {
	f := &File{Path: name, r: r, size: size, tensors: map[string]*entry{}}
	var magic [4]byte
	if size < 4 {
		return nil, f.errorf("file is %d bytes: too short for a checkpoint", size)
	}
	if _, err := r.ReadAt(magic[:], 0); err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	var obj any
	var err error
	switch {
	case string(magic[:]) == "PK\x03\x04" || string(magic[:]) == "PK\x05\x06":
		obj, err = f.readZip()
	case magic[0] == opProto:
		f.Legacy = true
		obj, err = f.readLegacy()
	default:
		return nil, f.errorf("neither a torch zip archive nor a legacy torch pickle (starts with % x)", magic)
	}
	if err != nil {
		return nil, err
	}
	if err := f.collect(obj, "", 0, map[any]bool{}); err != nil {
		return nil, err
	}
	if len(f.names) == 0 {
		return nil, f.errorf("no tensors found (the pickled object is a %s)", typeName(obj))
	}
	return f, nil
}

func (f *File) wrap(err error) error {
	var ge *GlobalError
	if errors.As(err, &ge) {
		return fmt.Errorf("%s: %w: %w", f.Path, ErrFormat, err)
	}
	return f.errorf("%v", err)
}

// readZip parses the archive, its pickle, and binds each storage to its
// record.
func (f *File) readZip() (any, error) {
	zr, err := zip.NewReader(f.r, f.size)
	if err != nil {
		return nil, f.errorf("zip archive: %v (truncated file?)", err)
	}
	var pkl *zip.File
	records := map[string]*zip.File{}
	for _, zf := range zr.File {
		records[zf.Name] = zf
		if strings.HasSuffix(zf.Name, "/data.pkl") && strings.Count(zf.Name, "/") == 1 || zf.Name == "data.pkl" {
			if pkl != nil {
				return nil, f.errorf("two data.pkl records (%s, %s)", pkl.Name, zf.Name)
			}
			pkl = zf
		}
	}
	if pkl == nil {
		if _, ok := records["constants.pkl"]; ok {
			return nil, f.errorf("a TorchScript archive, not a torch.save checkpoint")
		}
		return nil, f.errorf("zip archive has no <root>/data.pkl record: not a torch checkpoint")
	}
	root := strings.TrimSuffix(pkl.Name, "data.pkl")
	if bo, ok := records[root+"byteorder"]; ok {
		b, err := readRecord(bo, 16)
		if err != nil {
			return nil, f.errorf("%s: %v", bo.Name, err)
		}
		if s := strings.TrimSpace(string(b)); s != "little" {
			return nil, f.errorf("byte order %q is not supported (only little-endian)", s)
		}
	}
	data, err := readRecord(pkl, MaxPickle)
	if err != nil {
		return nil, f.errorf("%s: %v", pkl.Name, err)
	}
	storages := map[string]*storage{}
	u := &unpickler{data: data}
	u.persistent = func(pid any) (any, error) {
		ref, err := storagePID(pid)
		if err != nil {
			return nil, err
		}
		if s := storages[ref.key]; s != nil {
			if s.ref.dtype != ref.dtype || s.ref.numel != ref.numel {
				return nil, fmt.Errorf("storage %q declared twice with different types or sizes", ref.key)
			}
			return s.ref, nil
		}
		rec := records[root+"data/"+ref.key]
		if rec == nil {
			return nil, fmt.Errorf("storage record %sdata/%s is missing", root, ref.key)
		}
		want := uint64(ref.numel) * uint64(ref.dtype.Size())
		if rec.UncompressedSize64 != want {
			return nil, fmt.Errorf("storage %q claims %d %s elements (%d bytes) but record %s holds %d bytes",
				ref.key, ref.numel, ref.dtype, want, rec.Name, rec.UncompressedSize64)
		}
		s := &storage{ref: ref}
		if rec.Method == zip.Store {
			off, err := rec.DataOffset()
			if err != nil {
				return nil, fmt.Errorf("record %s: %v", rec.Name, err)
			}
			if off < 0 || uint64(off)+want > uint64(f.size) {
				return nil, fmt.Errorf("record %s runs past the end of the file (truncated file?)", rec.Name)
			}
			s.off = off
		} else {
			s.zf = rec
		}
		storages[ref.key] = s
		return ref, nil
	}
	obj, err := u.run()
	if err != nil {
		return nil, f.wrap(fmt.Errorf("%s: %w", pkl.Name, err))
	}
	f.storages = storages
	return obj, nil
}

// readRecord reads a whole zip record of at most limit bytes.
func readRecord(zf *zip.File, limit int64) ([]byte, error) {
	if zf.UncompressedSize64 > uint64(limit) {
		return nil, fmt.Errorf("record is %d bytes, over the %d-byte limit", zf.UncompressedSize64, limit)
	}
	rc, err := zf.Open()
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	b, err := io.ReadAll(io.LimitReader(rc, int64(zf.UncompressedSize64)+1))
	if err != nil {
		return nil, err
	}
	if uint64(len(b)) != zf.UncompressedSize64 {
		return nil, fmt.Errorf("record holds %d bytes, its header says %d", len(b), zf.UncompressedSize64)
	}
	return b, nil
}

// storagePID decodes a persistent id ('storage', torch.XStorage, key,
// location, numel[, view_metadata]).
func storagePID(pid any) (*storageRef, error) {
	t, ok := pid.(*pyTuple)
	if !ok || len(t.items) < 5 {
		return nil, fmt.Errorf("persistent id is a %s, not a storage tuple", typeName(pid))
	}
	a := t.items
	if s, _ := a[0].(string); s != "storage" {
		return nil, fmt.Errorf("persistent id of kind %v (only 'storage' is known)", a[0])
	}
	g, ok := a[1].(global)
	if !ok || g.module != "torch" {
		return nil, fmt.Errorf("storage type is a %s", typeName(a[1]))
	}
	dt, ok := storageTypes[g.name]
	if !ok {
		return nil, &GlobalError{Global: g.String(), Why: "storage type not supported"}
	}
	key, ok := a[2].(string)
	if !ok || key == "" || strings.ContainsAny(key, "/\\") || strings.Contains(key, "..") {
		return nil, fmt.Errorf("bad storage key %v", a[2])
	}
	loc, _ := a[3].(string)
	n, ok := a[4].(int64)
	if !ok || n < 0 || n > math.MaxInt64/8 {
		return nil, fmt.Errorf("storage %q has a bad element count %v", key, a[4])
	}
	if len(a) > 5 && a[5] != nil {
		return nil, fmt.Errorf("storage %q is a legacy storage view (view_metadata), not supported", key)
	}
	return &storageRef{key: key, dtype: dt, numel: n, location: loc}, nil
}

// collect walks the pickled object and registers its tensors.
func (f *File) collect(v any, prefix string, depth int, seen map[any]bool) error {
	if depth > 64 {
		return f.errorf("objects nested deeper than 64 levels at %q", prefix)
	}
	switch x := v.(type) {
	case *tensorRef:
		return f.addTensor(prefix, x)
	case *pyDict:
		if seen[x] {
			return nil // a cycle or a shared sub-dict: already registered
		}
		seen[x] = true
		for i, k := range x.keys {
			var ks string
			switch kk := k.(type) {
			case string:
				ks = kk
			case int64:
				ks = strconv.FormatInt(kk, 10)
			default:
				f.Skipped = append(f.Skipped, prefix+"<"+typeName(k)+" key>")
				continue
			}
			name := ks
			if prefix != "" {
				name = prefix + "." + ks
			}
			switch x.vals[i].(type) {
			case *tensorRef, *pyDict:
				if err := f.collect(x.vals[i], name, depth+1, seen); err != nil {
					return err
				}
			default:
				f.Skipped = append(f.Skipped, name)
			}
		}
		return nil
	}
	return nil
}

func (f *File) addTensor(name string, t *tensorRef) error {
	if name == "" {
		return f.errorf("the checkpoint is a bare tensor, not a dict of tensors")
	}
	if _, dup := f.tensors[name]; dup {
		return f.errorf("tensor %q appears twice", name)
	}
	s := f.storages[t.storage.key]
	if s == nil {
		return f.errorf("tensor %q: storage %q is not bound to data", name, t.storage.key)
	}
	if len(t.size) != len(t.stride) {
		return f.errorf("tensor %q: %d sizes but %d strides", name, len(t.size), len(t.stride))
	}
	if len(t.size) > 16 {
		return f.errorf("tensor %q: rank %d", name, len(t.size))
	}
	if t.offset < 0 {
		return f.errorf("tensor %q: negative storage offset %d", name, t.offset)
	}
	numel, last := int64(1), t.offset
	shape := make([]int, len(t.size))
	for i, d := range t.size {
		if d < 0 || t.stride[i] < 0 {
			return f.errorf("tensor %q: negative size or stride (%v, %v)", name, t.size, t.stride)
		}
		if d > 0 && numel > math.MaxInt64/8/d {
			return f.errorf("tensor %q: shape %v overflows", name, t.size)
		}
		numel *= d
		shape[i] = int(d)
	}
	if numel > t.storage.numel {
		// Only an expanded (stride-0) view can do this; refusing it bounds
		// every read by the file's own size.
		return f.errorf("tensor %q: view of %d elements over a %d-element storage %q (expanded views are not supported)",
			name, numel, t.storage.numel, t.storage.key)
	}
	if numel > 0 {
		for i, d := range t.size {
			if t.stride[i] > 0 && d-1 > (math.MaxInt64/4-last)/t.stride[i] {
				return f.errorf("tensor %q: strides %v overflow", name, t.stride)
			}
			last += (d - 1) * t.stride[i]
		}
		if last >= t.storage.numel {
			return f.errorf("tensor %q: view (offset %d, shape %v, stride %v) reaches element %d of a %d-element storage %q",
				name, t.offset, t.size, t.stride, last, t.storage.numel, t.storage.key)
		}
	}
	es := int64(t.storage.dtype.Size())
	info := safetensors.Info{Name: name, DType: t.storage.dtype, Shape: shape, Offset: -1, Size: numel * es}
	if contiguous(t.size, t.stride) && s.zf == nil {
		info.Offset = s.off + t.offset*es
	}
	f.tensors[name] = &entry{info: info, st: s, offset: t.offset, stride: t.stride}
	f.names = append(f.names, name)
	return nil
}

func contiguous(size, stride []int64) bool {
	want := int64(1)
	for i := len(size) - 1; i >= 0; i-- {
		if size[i] != 1 && stride[i] != want {
			return false
		}
		want *= size[i]
	}
	return true
}

// Names lists the tensors in the order the pickle holds them (a
// state_dict's own order).
func (f *File) Names() []string { return append([]string(nil), f.names...) }

// SortedNames lists the tensor names sorted.
func (f *File) SortedNames() []string {
	n := f.Names()
	sort.Strings(n)
	return n
}

// Info describes a tensor. Offset is the absolute byte offset of its data
// when the tensor is a contiguous view of an uncompressed storage, else -1;
// Size is its byte count once materialised.
func (f *File) Info(name string) (safetensors.Info, bool) {
	e, ok := f.tensors[name]
	if !ok {
		return safetensors.Info{}, false
	}
	return e.info, true
}

// Raw returns a tensor's elements as contiguous little-endian bytes in
// row-major order, materialising strided views.
func (f *File) Raw(name string) ([]byte, safetensors.Info, error) {
	e, ok := f.tensors[name]
	if !ok {
		return nil, safetensors.Info{}, fmt.Errorf("%s: no tensor %q", f.Path, name)
	}
	es := int64(e.info.DType.Size())
	numel := e.info.Size / es
	if numel == 0 {
		return []byte{}, e.info, nil
	}
	// The span of storage elements the view touches.
	last := e.offset
	for i, d := range e.info.Shape {
		last += int64(d-1) * e.stride[i]
	}
	span, err := f.readStorage(e.st, e.offset*es, (last-e.offset+1)*es)
	if err != nil {
		return nil, e.info, fmt.Errorf("%s: reading tensor %q: %w", f.Path, name, err)
	}
	size := make([]int64, len(e.info.Shape))
	for i, d := range e.info.Shape {
		size[i] = int64(d)
	}
	if contiguous(size, e.stride) {
		return span, e.info, nil
	}
	out := make([]byte, numel*es)
	idx := make([]int64, len(size))
	for k := int64(0); k < numel; k++ {
		src := int64(0)
		for i := range idx {
			src += idx[i] * e.stride[i]
		}
		copy(out[k*es:(k+1)*es], span[src*es:(src+1)*es])
		for i := len(idx) - 1; i >= 0; i-- {
			idx[i]++
			if idx[i] < size[i] {
				break
			}
			idx[i] = 0
		}
	}
	return out, e.info, nil
}

// readStorage reads n bytes at byte offset off of a storage.
func (f *File) readStorage(s *storage, off, n int64) ([]byte, error) {
	b := make([]byte, n)
	if s.zf == nil {
		if _, err := f.r.ReadAt(b, s.off+off); err != nil {
			return nil, err
		}
		return b, nil
	}
	rc, err := s.zf.Open()
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	if _, err := io.CopyN(io.Discard, rc, off); err != nil {
		return nil, err
	}
	if _, err := io.ReadFull(rc, b); err != nil {
		return nil, err
	}
	return b, nil
}

// Float32 reads a tensor converted to float32 (from any float or integer
// dtype: f16 and bf16 exactly, f64 rounded, integers converted).
func (f *File) Float32(name string) ([]float32, safetensors.Info, error) {
	b, info, err := f.Raw(name)
	if err != nil {
		return nil, info, err
	}
	return safetensors.ToFloat32(b, info.DType), info, nil
}

// Int64 reads an integer or bool tensor as int64.
func (f *File) Int64(name string) ([]int64, safetensors.Info, error) {
	b, info, err := f.Raw(name)
	if err != nil {
		return nil, info, err
	}
	out := make([]int64, len(b)/info.DType.Size())
	le := binary.LittleEndian
	for i := range out {
		switch info.DType {
		case dtI64:
			out[i] = int64(le.Uint64(b[8*i:]))
		case dtI32:
			out[i] = int64(int32(le.Uint32(b[4*i:])))
		case dtI16:
			out[i] = int64(int16(le.Uint16(b[2*i:])))
		case dtI8:
			out[i] = int64(int8(b[i]))
		case dtU8, dtBool:
			out[i] = int64(b[i])
		default:
			return nil, info, fmt.Errorf("%s: tensor %q is %s, not an integer type", f.Path, name, info.DType)
		}
	}
	return out, info, nil
}

// IsTorch reports whether the first bytes of a file (16 suffice) look like
// a torch checkpoint: a zip archive, or a legacy stream opening with the
// pickled torch magic number; a safetensors file (8-byte length, then '{')
// never does.
func IsTorch(head []byte) bool {
	if bytes.HasPrefix(head, []byte("PK\x03\x04")) || bytes.HasPrefix(head, []byte("PK\x05\x06")) {
		return true
	}
	if len(head) < 4 || head[0] != opProto || head[1] < 2 || head[1] > 5 || len(head) > 8 && head[8] == '{' {
		return false
	}
	return head[2] == opLong1 && head[3] == 10 || head[2] == opFrame
}

// Checkpoint is what both this reader and model/safetensors offer, so
// models load either format through one code path.
type Checkpoint interface {
	Names() []string
	Info(name string) (safetensors.Info, bool)
	Float32(name string) ([]float32, safetensors.Info, error)
	Int64(name string) ([]int64, safetensors.Info, error)
	Close() error
}

// OpenCheckpoint opens path as a torch checkpoint or a safetensors file,
// chosen by its first bytes (not its extension).
func OpenCheckpoint(path string) (Checkpoint, error) {
	fh, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	head := make([]byte, 16)
	n, _ := io.ReadFull(fh, head)
	fh.Close()
	if IsTorch(head[:n]) {
		return Open(path)
	}
	return safetensors.Open(path)
}
