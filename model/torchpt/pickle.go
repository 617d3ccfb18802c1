package torchpt

import (
	"encoding/binary"
	"fmt"
	"math"
	"math/big"
	"strconv"
	"unicode/utf8"
)

// A restricted pickle machine. It interprets the opcodes that build plain
// data (numbers, strings, bytes, tuples, lists, dicts, sets) and resolves
// only the globals in allowedGlobals; nothing it reads is ever executed.
// REDUCE calls one of a fixed set of Go functions that rebuild an
// OrderedDict, a tensor view or a Parameter; every other callable, and the
// opcodes that instantiate arbitrary classes (INST, OBJ, NEWOBJ,
// NEWOBJ_EX), extension registries and out-of-band buffers, are refused.

// Python values as the machine builds them: nil (None), bool, int64,
// *big.Int (ints beyond int64), float64, string (str and Python 2 str),
// pyBytes, *pyTuple, *pyList, *pyDict, *pySet, global, *storageRef,
// *tensorRef.
type (
	pyBytes []byte
	pyTuple struct{ items []any }
	pyList  struct{ items []any }
	pySet   struct{ items []any }
	// pyDict keeps insertion order (dict and OrderedDict both do).
	pyDict struct {
		keys []any
		vals []any
		idx  map[string]int // position of each string key
	}
	global struct{ module, name string }
)

func (g global) String() string { return g.module + "." + g.name }

// storageRef is a torch storage named by a persistent id.
type storageRef struct {
	key      string
	dtype    dtype
	numel    int64
	location string
}

// tensorRef is a strided view into a storage (torch._utils._rebuild_tensor_v2).
type tensorRef struct {
	storage *storageRef
	offset  int64   // in elements
	size    []int64 // shape
	stride  []int64 // in elements
}

func (d *pyDict) set(k, v any) {
	if s, ok := k.(string); ok {
		if i, ok := d.idx[s]; ok {
			d.vals[i] = v
			return
		}
		if d.idx == nil {
			d.idx = map[string]int{}
		}
		d.idx[s] = len(d.keys)
	}
	d.keys = append(d.keys, k)
	d.vals = append(d.vals, v)
}

// Pickle opcodes (pickletools names).
const (
	opMark           = '('
	opStop           = '.'
	opPop            = '0'
	opPopMark        = '1'
	opDup            = '2'
	opFloat          = 'F'
	opInt            = 'I'
	opBinInt         = 'J'
	opBinInt1        = 'K'
	opLong           = 'L'
	opBinInt2        = 'M'
	opNone           = 'N'
	opPersID         = 'P'
	opBinPersID      = 'Q'
	opReduce         = 'R'
	opString         = 'S'
	opBinString      = 'T'
	opShortBinString = 'U'
	opUnicode        = 'V'
	opBinUnicode     = 'X'
	opAppend         = 'a'
	opBuild          = 'b'
	opGlobal         = 'c'
	opDict           = 'd'
	opEmptyDict      = '}'
	opAppends        = 'e'
	opGet            = 'g'
	opBinGet         = 'h'
	opInst           = 'i'
	opLongBinGet     = 'j'
	opList           = 'l'
	opEmptyList      = ']'
	opObj            = 'o'
	opPut            = 'p'
	opBinPut         = 'q'
	opLongBinPut     = 'r'
	opSetItem        = 's'
	opTuple          = 't'
	opEmptyTuple     = ')'
	opSetItems       = 'u'
	opBinFloat       = 'G'
	opProto          = 0x80
	opNewObj         = 0x81
	opExt1           = 0x82
	opExt2           = 0x83
	opExt4           = 0x84
	opTuple1         = 0x85
	opTuple2         = 0x86
	opTuple3         = 0x87
	opNewTrue        = 0x88
	opNewFalse       = 0x89
	opLong1          = 0x8a
	opLong4          = 0x8b
	opBinBytes       = 'B'
	opShortBinBytes  = 'C'
	opShortBinUni    = 0x8c
	opBinUnicode8    = 0x8d
	opBinBytes8      = 0x8e
	opEmptySet       = 0x8f
	opAddItems       = 0x90
	opFrozenSet      = 0x91
	opNewObjEx       = 0x92
	opStackGlobal    = 0x93
	opMemoize        = 0x94
	opFrame          = 0x95
	opByteArray8     = 0x96
	opNextBuffer     = 0x97
	opReadOnlyBuffer = 0x98
)

// unpickler runs one pickle from data[pos:].
type unpickler struct {
	data  []byte
	pos   int
	stack []any
	marks []int
	memo  map[int64]any
	// persistent resolves a persistent id (BINPERSID).
	persistent func(pid any) (any, error)
}

// errorf reports a problem at the current opcode; the caller adds the file.
func (u *unpickler) errorf(format string, args ...any) error {
	return fmt.Errorf("pickle offset %d: %s", u.pos, fmt.Sprintf(format, args...))
}

func (u *unpickler) need(n int) ([]byte, error) {
	if n < 0 || n > len(u.data)-u.pos {
		return nil, u.errorf("truncated: %d bytes needed, %d left", n, len(u.data)-u.pos)
	}
	b := u.data[u.pos : u.pos+n]
	u.pos += n
	return b, nil
}

func (u *unpickler) line() (string, error) {
	for i := u.pos; i < len(u.data); i++ {
		if u.data[i] == '\n' {
			s := string(u.data[u.pos:i])
			u.pos = i + 1
			return s, nil
		}
	}
	return "", u.errorf("truncated: unterminated text argument")
}

// length reads an n-byte little-endian length and checks it against the
// bytes left, so no claim can force a large allocation.
func (u *unpickler) length(n int) (int, error) {
	b, err := u.need(n)
	if err != nil {
		return 0, err
	}
	var v uint64
	switch n {
	case 1:
		v = uint64(b[0])
	case 4:
		v = uint64(binary.LittleEndian.Uint32(b))
	case 8:
		v = binary.LittleEndian.Uint64(b)
	}
	if v > uint64(len(u.data)-u.pos) {
		return 0, u.errorf("length %d exceeds the %d bytes left", v, len(u.data)-u.pos)
	}
	return int(v), nil
}

func (u *unpickler) push(v any) { u.stack = append(u.stack, v) }

func (u *unpickler) pop() (any, error) {
	floor := 0
	if len(u.marks) > 0 {
		floor = u.marks[len(u.marks)-1]
	}
	if len(u.stack) <= floor {
		return nil, u.errorf("stack underflow")
	}
	v := u.stack[len(u.stack)-1]
	u.stack = u.stack[:len(u.stack)-1]
	return v, nil
}

func (u *unpickler) top() (any, error) {
	floor := 0
	if len(u.marks) > 0 {
		floor = u.marks[len(u.marks)-1]
	}
	if len(u.stack) <= floor {
		return nil, u.errorf("stack underflow")
	}
	return u.stack[len(u.stack)-1], nil
}

// popMark returns the items above the topmost mark and removes them and
// the mark.
func (u *unpickler) popMark() ([]any, error) {
	if len(u.marks) == 0 {
		return nil, u.errorf("no mark on the stack")
	}
	m := u.marks[len(u.marks)-1]
	u.marks = u.marks[:len(u.marks)-1]
	items := append([]any(nil), u.stack[m:]...)
	u.stack = u.stack[:m]
	return items, nil
}

func (u *unpickler) memoPut(i int64) error {
	v, err := u.top()
	if err != nil {
		return err
	}
	if i < 0 {
		return u.errorf("negative memo index %d", i)
	}
	u.memo[i] = v
	return nil
}

func (u *unpickler) memoGet(i int64) error {
	v, ok := u.memo[i]
	if !ok {
		return u.errorf("memo index %d was never stored", i)
	}
	u.push(v)
	return nil
}

func decodeLong(b []byte) any {
	if len(b) == 0 {
		return int64(0)
	}
	if len(b) <= 8 {
		var v uint64
		for i := len(b) - 1; i >= 0; i-- {
			v = v<<8 | uint64(b[i])
		}
		shift := 64 - 8*uint(len(b))
		return int64(v<<shift) >> shift // sign-extend
	}
	be := make([]byte, len(b))
	for i := range b {
		be[len(b)-1-i] = b[i]
	}
	v := new(big.Int).SetBytes(be)
	if b[len(b)-1]&0x80 != 0 {
		v.Sub(v, new(big.Int).Lsh(big.NewInt(1), uint(8*len(b))))
	}
	if v.IsInt64() {
		return v.Int64()
	}
	return v
}

// run interprets opcodes until STOP and returns the pickled object.
func (u *unpickler) run() (any, error) {
	if u.memo == nil {
		u.memo = map[int64]any{}
	}
	for {
		if u.pos >= len(u.data) {
			return nil, u.errorf("truncated: no STOP opcode")
		}
		op := u.data[u.pos]
		u.pos++
		var err error
		switch op {
		case opProto:
			var b []byte
			if b, err = u.need(1); err == nil && b[0] > 5 {
				err = u.errorf("unsupported pickle protocol %d", b[0])
			}
		case opFrame:
			_, err = u.need(8) // frames are only a buffering hint
		case opStop:
			v, err := u.pop()
			if err != nil {
				return nil, err
			}
			return v, nil
		case opMark:
			u.marks = append(u.marks, len(u.stack))
		case opPop:
			if len(u.marks) > 0 && len(u.stack) == u.marks[len(u.marks)-1] {
				u.marks = u.marks[:len(u.marks)-1] // POP of a mark
			} else {
				_, err = u.pop()
			}
		case opPopMark:
			_, err = u.popMark()
		case opDup:
			var v any
			if v, err = u.top(); err == nil {
				u.push(v)
			}
		case opNone:
			u.push(nil)
		case opNewTrue:
			u.push(true)
		case opNewFalse:
			u.push(false)
		case opInt:
			var s string
			if s, err = u.line(); err == nil {
				switch s {
				case "00":
					u.push(false)
				case "01":
					u.push(true)
				default:
					var v int64
					if v, err = strconv.ParseInt(s, 10, 64); err != nil {
						err = u.errorf("bad INT %q", s)
					}
					u.push(v)
				}
			}
		case opLong:
			var s string
			if s, err = u.line(); err == nil {
				if len(s) > 0 && s[len(s)-1] == 'L' {
					s = s[:len(s)-1]
				}
				v, ok := new(big.Int).SetString(s, 10)
				if !ok {
					err = u.errorf("bad LONG %q", s)
				} else if v.IsInt64() {
					u.push(v.Int64())
				} else {
					u.push(v)
				}
			}
		case opBinInt:
			var b []byte
			if b, err = u.need(4); err == nil {
				u.push(int64(int32(binary.LittleEndian.Uint32(b))))
			}
		case opBinInt1:
			var b []byte
			if b, err = u.need(1); err == nil {
				u.push(int64(b[0]))
			}
		case opBinInt2:
			var b []byte
			if b, err = u.need(2); err == nil {
				u.push(int64(binary.LittleEndian.Uint16(b)))
			}
		case opLong1, opLong4:
			var n int
			if n, err = u.length(map[byte]int{opLong1: 1, opLong4: 4}[op]); err == nil {
				var b []byte
				if b, err = u.need(n); err == nil {
					u.push(decodeLong(b))
				}
			}
		case opFloat:
			var s string
			if s, err = u.line(); err == nil {
				var v float64
				if v, err = strconv.ParseFloat(s, 64); err != nil {
					err = u.errorf("bad FLOAT %q", s)
				}
				u.push(v)
			}
		case opBinFloat:
			var b []byte
			if b, err = u.need(8); err == nil {
				u.push(math.Float64frombits(binary.BigEndian.Uint64(b)))
			}
		case opBinUnicode, opShortBinUni, opBinUnicode8, opBinString, opShortBinString:
			n := map[byte]int{opBinUnicode: 4, opShortBinUni: 1, opBinUnicode8: 8, opBinString: 4, opShortBinString: 1}[op]
			var l int
			if l, err = u.length(n); err == nil {
				var b []byte
				if b, err = u.need(l); err == nil {
					if (op == opBinUnicode || op == opShortBinUni || op == opBinUnicode8) && !utf8.Valid(b) {
						err = u.errorf("string is not valid UTF-8")
					}
					u.push(string(b))
				}
			}
		case opBinBytes, opShortBinBytes, opBinBytes8, opByteArray8:
			n := map[byte]int{opBinBytes: 4, opShortBinBytes: 1, opBinBytes8: 8, opByteArray8: 8}[op]
			var l int
			if l, err = u.length(n); err == nil {
				var b []byte
				if b, err = u.need(l); err == nil {
					u.push(pyBytes(append([]byte(nil), b...)))
				}
			}
		case opEmptyTuple:
			u.push(&pyTuple{})
		case opTuple:
			var items []any
			if items, err = u.popMark(); err == nil {
				u.push(&pyTuple{items})
			}
		case opTuple1, opTuple2, opTuple3:
			n := int(op-opTuple1) + 1
			items := make([]any, n)
			for i := n - 1; i >= 0 && err == nil; i-- {
				items[i], err = u.pop()
			}
			u.push(&pyTuple{items})
		case opEmptyList:
			u.push(&pyList{})
		case opList:
			var items []any
			if items, err = u.popMark(); err == nil {
				u.push(&pyList{items})
			}
		case opAppend:
			var v, l any
			if v, err = u.pop(); err == nil {
				if l, err = u.top(); err == nil {
					if pl, ok := l.(*pyList); ok {
						pl.items = append(pl.items, v)
					} else {
						err = u.errorf("APPEND to a %s", typeName(l))
					}
				}
			}
		case opAppends:
			var items []any
			var l any
			if items, err = u.popMark(); err == nil {
				if l, err = u.top(); err == nil {
					if pl, ok := l.(*pyList); ok {
						pl.items = append(pl.items, items...)
					} else {
						err = u.errorf("APPENDS to a %s", typeName(l))
					}
				}
			}
		case opEmptyDict:
			u.push(&pyDict{})
		case opDict:
			var items []any
			if items, err = u.popMark(); err == nil {
				d := &pyDict{}
				err = u.setItems(d, items)
				u.push(d)
			}
		case opSetItem:
			var k, v, d any
			if v, err = u.pop(); err == nil {
				if k, err = u.pop(); err == nil {
					if d, err = u.top(); err == nil {
						err = u.setItems(d, []any{k, v})
					}
				}
			}
		case opSetItems:
			var items []any
			var d any
			if items, err = u.popMark(); err == nil {
				if d, err = u.top(); err == nil {
					err = u.setItems(d, items)
				}
			}
		case opEmptySet:
			u.push(&pySet{})
		case opAddItems:
			var items []any
			var s any
			if items, err = u.popMark(); err == nil {
				if s, err = u.top(); err == nil {
					if ps, ok := s.(*pySet); ok {
						ps.items = append(ps.items, items...)
					} else {
						err = u.errorf("ADDITEMS to a %s", typeName(s))
					}
				}
			}
		case opFrozenSet:
			var items []any
			if items, err = u.popMark(); err == nil {
				u.push(&pySet{items})
			}
		case opPut:
			var s string
			if s, err = u.line(); err == nil {
				var i int64
				if i, err = strconv.ParseInt(s, 10, 64); err != nil {
					err = u.errorf("bad PUT index %q", s)
				} else {
					err = u.memoPut(i)
				}
			}
		case opBinPut:
			var b []byte
			if b, err = u.need(1); err == nil {
				err = u.memoPut(int64(b[0]))
			}
		case opLongBinPut:
			var b []byte
			if b, err = u.need(4); err == nil {
				err = u.memoPut(int64(binary.LittleEndian.Uint32(b)))
			}
		case opMemoize:
			err = u.memoPut(int64(len(u.memo)))
		case opGet:
			var s string
			if s, err = u.line(); err == nil {
				var i int64
				if i, err = strconv.ParseInt(s, 10, 64); err != nil {
					err = u.errorf("bad GET index %q", s)
				} else {
					err = u.memoGet(i)
				}
			}
		case opBinGet:
			var b []byte
			if b, err = u.need(1); err == nil {
				err = u.memoGet(int64(b[0]))
			}
		case opLongBinGet:
			var b []byte
			if b, err = u.need(4); err == nil {
				err = u.memoGet(int64(binary.LittleEndian.Uint32(b)))
			}
		case opGlobal:
			var mod, name string
			if mod, err = u.line(); err == nil {
				if name, err = u.line(); err == nil {
					err = u.global(global{mod, name})
				}
			}
		case opStackGlobal:
			var m, n any
			if n, err = u.pop(); err == nil {
				if m, err = u.pop(); err == nil {
					ms, ok1 := m.(string)
					ns, ok2 := n.(string)
					if !ok1 || !ok2 {
						err = u.errorf("STACK_GLOBAL needs two strings, got %s and %s", typeName(m), typeName(n))
					} else {
						err = u.global(global{ms, ns})
					}
				}
			}
		case opReduce:
			var f, args any
			if args, err = u.pop(); err == nil {
				if f, err = u.pop(); err == nil {
					var v any
					if v, err = u.reduce(f, args); err == nil {
						u.push(v)
					}
				}
			}
		case opBuild:
			var state, obj any
			if state, err = u.pop(); err == nil {
				if obj, err = u.top(); err == nil {
					// State set on an OrderedDict (torch's _metadata) or a
					// tensor (Python attributes) carries no tensor data.
					switch obj.(type) {
					case *pyDict, *tensorRef:
						_ = state
					default:
						err = u.errorf("BUILD on a %s is not allowed", typeName(obj))
					}
				}
			}
		case opBinPersID:
			var pid any
			if pid, err = u.pop(); err == nil {
				if u.persistent == nil {
					err = u.errorf("persistent id outside a torch archive")
				} else {
					var v any
					if v, err = u.persistent(pid); err == nil {
						u.push(v)
					}
				}
			}
		case opPersID:
			err = u.errorf("text persistent ids (PERSID) are not used by torch and are refused")
		case opInst, opObj, opNewObj, opNewObjEx:
			err = u.errorf("opcode %s instantiates an arbitrary class and is refused", opName(op))
		case opExt1, opExt2, opExt4:
			err = u.errorf("extension registry opcode %s is refused", opName(op))
		case opNextBuffer, opReadOnlyBuffer:
			err = u.errorf("out-of-band buffer opcode %s is refused", opName(op))
		case opString, opUnicode:
			err = u.errorf("text string opcode %s is not supported", opName(op))
		default:
			err = u.errorf("unknown pickle opcode 0x%02x", op)
		}
		if err != nil {
			return nil, err
		}
	}
}

func opName(op byte) string {
	switch op {
	case opInst:
		return "INST"
	case opObj:
		return "OBJ"
	case opNewObj:
		return "NEWOBJ"
	case opNewObjEx:
		return "NEWOBJ_EX"
	case opExt1, opExt2, opExt4:
		return fmt.Sprintf("EXT%d", map[byte]int{opExt1: 1, opExt2: 2, opExt4: 4}[op])
	case opNextBuffer:
		return "NEXT_BUFFER"
	case opReadOnlyBuffer:
		return "READONLY_BUFFER"
	case opString:
		return "STRING"
	case opUnicode:
		return "UNICODE"
	}
	return fmt.Sprintf("0x%02x", op)
}

func (u *unpickler) setItems(d any, items []any) error {
	pd, ok := d.(*pyDict)
	if !ok {
		return u.errorf("SETITEM(S) on a %s", typeName(d))
	}
	if len(items)%2 != 0 {
		return u.errorf("odd number of items for a dict")
	}
	for i := 0; i < len(items); i += 2 {
		pd.set(items[i], items[i+1])
	}
	return nil
}

func typeName(v any) string {
	switch x := v.(type) {
	case nil:
		return "None"
	case bool:
		return "bool"
	case int64, *big.Int:
		return "int"
	case float64:
		return "float"
	case string:
		return "str"
	case pyBytes:
		return "bytes"
	case *pyTuple:
		return "tuple"
	case *pyList:
		return "list"
	case *pyDict:
		return "dict"
	case *pySet:
		return "set"
	case global:
		return "global " + x.String()
	case *storageRef:
		return "storage"
	case *tensorRef:
		return "tensor"
	}
	return fmt.Sprintf("%T", v)
}
