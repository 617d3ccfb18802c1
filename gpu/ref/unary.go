package ref

import "math"

// Unary applies an activation elementwise: "silu", "gelu" (exact, erf),
// "gelu_tanh", "quick_gelu" or "erf".
func Unary(op string, x *T) *T {
	out := New(x.Shape...)
	for i, v := range x.Data {
		out.Data[i] = unaryF(op, v)
	}
	return out
}

// UnaryBackward returns g * f'(x).
func UnaryBackward(op string, x, g *T) *T {
	out := New(x.Shape...)
	for i, v := range x.Data {
		out.Data[i] = g.Data[i] * unaryD(op, v)
	}
	return out
}

func sigmoid(x float64) float64 { return 1 / (1 + math.Exp(-x)) }

const sqrt2overPi = 0.7978845608028654 // sqrt(2/pi)

// GELU is the exact GELU x * Phi(x).
func GELU(x float64) float64 { return 0.5 * x * (1 + math.Erf(x/math.Sqrt2)) }

// GELUGrad is d/dx GELU = Phi(x) + x phi(x).
func GELUGrad(x float64) float64 {
	return 0.5*(1+math.Erf(x/math.Sqrt2)) + x*math.Exp(-0.5*x*x)/math.Sqrt(2*math.Pi)
}

func unaryF(op string, x float64) float64 {
	switch op {
	case "silu":
		return x * sigmoid(x)
	case "gelu":
		return GELU(x)
	case "gelu_tanh":
		return 0.5 * x * (1 + math.Tanh(sqrt2overPi*(x+0.044715*x*x*x)))
	case "quick_gelu":
		return x * sigmoid(1.702*x)
	case "erf":
		return math.Erf(x)
	case "exp":
		return math.Exp(x)
	}
	panic("ref: unknown unary op " + op)
}

func unaryD(op string, x float64) float64 {
	switch op {
	case "silu":
		s := sigmoid(x)
		return s * (1 + x*(1-s))
	case "gelu":
		return GELUGrad(x)
	case "gelu_tanh":
		u := sqrt2overPi * (x + 0.044715*x*x*x)
		t := math.Tanh(u)
		return 0.5*(1+t) + 0.5*x*(1-t*t)*sqrt2overPi*(1+3*0.044715*x*x)
	case "quick_gelu":
		s := sigmoid(1.702 * x)
		return s * (1 + 1.702*x*(1-s))
	case "erf":
		return 2 / math.Sqrt(math.Pi) * math.Exp(-x*x)
	case "exp":
		return math.Exp(x)
	}
	panic("ref: unknown unary op " + op)
}
