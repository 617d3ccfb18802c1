// erf_lib: helper functions, no entry point. Included (//#include) by
// unary_fwd.wgsl, unary_bwd.wgsl, geglu_fwd.wgsl and
// geglu_bwd.wgsl, so every kernel shares one erf.
//
// erf_f: WGSL has no erf. |x| < 1: Taylor series x * sum_{n<=10} c_n x^(2n)
// (truncation error < 1.5e-8 at |x| = 1). 1 <= |x| < 4: erf = 1 -
// exp(-x^2) * erfcx(x), with the scaled complementary error function erfcx
// as a degree-12 polynomial in u = (|x| - 2.5) / 1.5, a least-squares fit
// in float64 on 400 Chebyshev nodes of [1, 4]. |x| >= 4: +-1 (erfc(4) =
// 1.5e-8 is below half an f32 ulp of 1). Evaluated in f32 the maximum
// absolute error against math.Erf is about 1.6e-7 (TestErfAccuracy checks
// 1e-6 on the GPU). NaN propagates.
const ERF_T0: f32 = 1.1283791670955126;
const ERF_T1: f32 = -0.37612638903183754;
const ERF_T2: f32 = 0.11283791670955126;
const ERF_T3: f32 = -0.026866170645131252;
const ERF_T4: f32 = 0.005223977625442188;
const ERF_T5: f32 = -0.0008548327023450852;
const ERF_T6: f32 = 0.00012055332981789664;
const ERF_T7: f32 = -1.492565035840625e-05;
const ERF_T8: f32 = 1.6462114365889246e-06;
const ERF_T9: f32 = -1.6365844691234924e-07;
const ERF_T10: f32 = 1.4807192815879218e-08;

fn erf_f(x: f32) -> f32 {
  let a = abs(x);
  var r: f32;
  if (a >= 4.0) {
    r = 1.0;
  } else if (a >= 1.0) {
    let u = (a - 2.5) / 1.5;
    var q = 1.381908904e-05;
    q = q * u - 3.692872357e-05;
    q = q * u + 5.494724812e-05;
    q = q * u - 1.439485979e-04;
    q = q * u + 4.145080979e-04;
    q = q * u - 1.017117774e-03;
    q = q * u + 2.401701695e-03;
    q = q * u - 5.567332910e-03;
    q = q * u + 1.248970367e-02;
    q = q * u - 2.700572529e-02;
    q = q * u + 5.611047258e-02;
    q = q * u - 1.115210047e-01;
    q = q * u + 2.108063643e-01;
    r = 1.0 - exp(-a * a) * q;
  } else {
    let z = a * a;
    var q = ERF_T10;
    q = q * z + ERF_T9;
    q = q * z + ERF_T8;
    q = q * z + ERF_T7;
    q = q * z + ERF_T6;
    q = q * z + ERF_T5;
    q = q * z + ERF_T4;
    q = q * z + ERF_T3;
    q = q * z + ERF_T2;
    q = q * z + ERF_T1;
    q = q * z + ERF_T0;
    r = a * q;
  }
  return select(r, -r, x < 0.0);
}

// d/dx erf(x) = 2/sqrt(pi) exp(-x^2).
fn derf_f(x: f32) -> f32 { return 1.1283791670955126 * exp(-x * x); }

// Exact GELU: x * Phi(x) = 0.5 x (1 + erf(x / sqrt 2)).
fn gelu_f(x: f32) -> f32 { return 0.5 * x * (1.0 + erf_f(x * 0.7071067811865476)); }

// d/dx GELU = Phi(x) + x phi(x), phi(x) = exp(-x^2/2) / sqrt(2 pi).
fn dgelu_f(x: f32) -> f32 {
  return 0.5 * (1.0 + erf_f(x * 0.7071067811865476)) + x * 0.3989422804014327 * exp(-0.5 * x * x);
}

// Sigmoid without overflow: exp of a non-positive argument only.
fn sigmoid_f(x: f32) -> f32 {
  if (x >= 0.0) { return 1.0 / (1.0 + exp(-x)); }
  let e = exp(x);
  return e / (1.0 + e);
}

// tanh(u) = sign(u) (1 - e) / (1 + e) with e = exp(-2|u|) <= 1: no
// overflow for large |u| (the builtin may compute exp(2u) / ... and give
// NaN). Absolute error ~1e-7; relative accuracy degrades for |u| << 1e-3,
// which GELU-tanh does not need (it uses 1 + tanh).
fn tanh_f(u: f32) -> f32 {
  let e = exp(-2.0 * abs(u));
  return sign(u) * (1.0 - e) / (1.0 + e);
}

// sech^2(u) = 1 - tanh^2(u) = 4e / (1 + e)^2 with e = exp(-2|u|), without
// the cancellation of 1 - t*t.
fn sech2_f(u: f32) -> f32 {
  let e = exp(-2.0 * abs(u));
  return 4.0 * e / ((1.0 + e) * (1.0 + e));
}
