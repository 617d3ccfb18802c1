package torchpt

import (
	"encoding/binary"
	"fmt"
	"math/big"
	"strings"
)

// The legacy (torch < 1.6, or _use_new_zipfile_serialization=False)
// layout: pickle(magic), pickle(protocol 1001), pickle(sys_info),
// pickle(obj) with storage persistent ids, pickle(sorted storage keys),
// then per key an int64 element count and the storage's raw bytes.

// legacyMagic is torch.serialization.MAGIC_NUMBER.
var legacyMagic, _ = new(big.Int).SetString("1950a86a20f9469cfc6c", 16)

func (f *File) readLegacy() (any, error) {
	// The pickles come first; read a growing prefix until they parse.
	for n := int64(1 << 20); ; n *= 4 {
		if n > f.size {
			n = f.size
		}
		if n > MaxPickle {
			return nil, f.errorf("legacy pickles exceed %d bytes", MaxPickle)
		}
		buf := make([]byte, n)
		if _, err := f.r.ReadAt(buf, 0); err != nil {
			return nil, f.errorf("reading: %v", err)
		}
		obj, err, truncated := f.parseLegacy(buf)
		if truncated && n < f.size {
			continue
		}
		return obj, err
	}
}

// parseLegacy runs the five pickles over buf; truncated reports that buf
// ended before they did.
func (f *File) parseLegacy(buf []byte) (obj any, err error, truncated bool) {
	pos := 0
	next := func(persistent func(any) (any, error)) (any, error) {
		u := &unpickler{data: buf, pos: pos, persistent: persistent}
		v, err := u.run()
		if err != nil && strings.Contains(err.Error(), "truncated") {
			truncated = true
		}
		pos = u.pos
		return v, err
	}
	fail := func(err error) (any, error, bool) {
		return nil, f.wrap(fmt.Errorf("legacy layout: %w", err)), truncated
	}
	magic, err := next(nil)
	if err != nil {
		return fail(err)
	}
	if m, ok := magic.(*big.Int); !ok || m.Cmp(legacyMagic) != 0 {
		return nil, f.errorf("a pickle, but not a torch checkpoint (no torch magic number)"), false
	}
	proto, err := next(nil)
	if err != nil {
		return fail(err)
	}
	if p, _ := proto.(int64); p != 1001 {
		return nil, f.errorf("legacy protocol version %v (only 1001 is known)", proto), false
	}
	sys, err := next(nil)
	if err != nil {
		return fail(err)
	}
	if d, ok := sys.(*pyDict); ok {
		for i, k := range d.keys {
			if k == "little_endian" && d.vals[i] != true {
				return nil, f.errorf("big-endian legacy checkpoint is not supported"), false
			}
		}
	}
	refs := map[string]*storageRef{}
	obj, err = next(func(pid any) (any, error) {
		ref, err := storagePID(pid)
		if err != nil {
			return nil, err
		}
		if old := refs[ref.key]; old != nil {
			if old.dtype != ref.dtype || old.numel != ref.numel {
				return nil, fmt.Errorf("storage %q declared twice with different types or sizes", ref.key)
			}
			return old, nil
		}
		refs[ref.key] = ref
		return ref, nil
	})
	if err != nil {
		return fail(err)
	}
	keysV, err := next(nil)
	if err != nil {
		return fail(err)
	}
	keys, ok := keysV.(*pyList)
	if !ok {
		return nil, f.errorf("legacy storage key list is a %s", typeName(keysV)), false
	}
	f.storages = map[string]*storage{}
	off := int64(pos)
	for _, kv := range keys.items {
		key, ok := kv.(string)
		if !ok {
			return nil, f.errorf("legacy storage key is a %s", typeName(kv)), false
		}
		ref := refs[key]
		if ref == nil {
			return nil, f.errorf("legacy storage %q is listed but no tensor uses it", key), false
		}
		if f.storages[key] != nil {
			return nil, f.errorf("legacy storage %q listed twice", key), false
		}
		var cnt [8]byte
		if off+8 > f.size {
			return nil, f.errorf("legacy storage %q: file ends before its header (truncated file?)", key), false
		}
		if _, err := f.r.ReadAt(cnt[:], off); err != nil {
			return nil, f.errorf("legacy storage %q: %v", key, err), false
		}
		n := int64(binary.LittleEndian.Uint64(cnt[:]))
		if n != ref.numel {
			return nil, f.errorf("legacy storage %q: record holds %d elements, the pickle claims %d", key, n, ref.numel), false
		}
		bytes := n * int64(ref.dtype.Size())
		if off+8+bytes > f.size || off+8+bytes < off {
			return nil, f.errorf("legacy storage %q: %d bytes run past the end of the file (truncated file?)", key, bytes), false
		}
		f.storages[key] = &storage{ref: ref, off: off + 8}
		off += 8 + bytes
	}
	for key := range refs {
		if f.storages[key] == nil {
			return nil, f.errorf("legacy storage %q is used but its data is missing", key), false
		}
	}
	return obj, nil, false
}
