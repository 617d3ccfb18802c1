package ref

import "fmt"

// reducedAxes marks the axes a reduction covers (all for none given).
func reducedAxes(shape, axes []int) []bool {
	red := make([]bool, len(shape))
	if len(axes) == 0 {
		for i := range red {
			red[i] = true
		}
	}
	for _, a := range axes {
		if a < 0 {
			a += len(shape)
		}
		if a < 0 || a >= len(shape) || red[a] {
			panic(fmt.Sprintf("ref: bad axes %v for %v", axes, shape))
		}
		red[a] = true
	}
	return red
}

// outIndex maps flat index i of shape to the flat index of the reduced
// output (reduced axes dropped).
func outIndex(i int, shape []int, red []bool) int {
	o, stride := 0, 1
	for d := len(shape) - 1; d >= 0; d-- {
		c := i % shape[d]
		i /= shape[d]
		if !red[d] {
			o += c * stride
			stride *= shape[d]
		}
	}
	return o
}

// Reduce sums (or averages, mean) x over axes, removing them; no axes
// reduces everything to shape [].
func Reduce(x *T, axes []int, mean bool) *T {
	red := reducedAxes(x.Shape, axes)
	out := []int{}
	n := 1
	for d, s := range x.Shape {
		if red[d] {
			n *= s
		} else {
			out = append(out, s)
		}
	}
	o := New(out...)
	for i, v := range x.Data {
		o.Data[outIndex(i, x.Shape, red)] += v
	}
	if mean {
		for i := range o.Data {
			o.Data[i] /= float64(n)
		}
	}
	return o
}

// ReduceBackward broadcasts g back to shape (divided by the count for a
// mean).
func ReduceBackward(shape, axes []int, g *T, mean bool) *T {
	red := reducedAxes(shape, axes)
	n := 1
	for d, s := range shape {
		if red[d] {
			n *= s
		}
	}
	dx := New(shape...)
	for i := range dx.Data {
		dx.Data[i] = g.Data[outIndex(i, shape, red)]
		if mean {
			dx.Data[i] /= float64(n)
		}
	}
	return dx
}
