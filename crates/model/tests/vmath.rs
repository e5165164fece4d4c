//! The vectorized exp, tanh and sigmoid against libm: ≤ 2 ulp over the whole range (random
//! bit patterns, dense sweeps of the interesting intervals, every special value), the sign of
//! ±0 kept, and the slice kernels bit-identical to the scalar formulas.
use hesslab_data::rng::Rng;
use hesslab_model::vmath;

/// Distance in units in the last place (0 for equal values, both NaN or equal infinities).
fn ulps(a: f64, b: f64) -> u64 {
    if a.is_nan() || b.is_nan() {
        return if a.is_nan() && b.is_nan() { 0 } else { u64::MAX };
    }
    if a == b {
        // ±0 compare equal: the sign must match too.
        return if a.is_sign_negative() == b.is_sign_negative() { 0 } else { u64::MAX };
    }
    let ord = |x: f64| {
        let b = x.to_bits() as i64;
        if b < 0 { i64::MIN.wrapping_sub(b) } else { b }
    };
    ord(a).abs_diff(ord(b))
}

fn libm_sigmoid(z: f64) -> f64 {
    if z >= 0.0 {
        1.0 / (1.0 + (-z).exp())
    } else {
        let e = z.exp();
        e / (1.0 + e)
    }
}

fn specials() -> Vec<f64> {
    let mut v = vec![
        0.0,
        f64::MIN_POSITIVE,
        f64::from_bits(1),
        f64::from_bits(0x000f_ffff_ffff_ffff),
        f64::INFINITY,
        f64::NAN,
        f64::MAX,
        f64::EPSILON,
        7.450_580_596_923_828e-9,
        0.625,
        22.0,
        354.0,
        709.78,
        709.782_712_893_384,
        -708.396_418_532_264_1,
        -745.133_219_101_941_1,
        -745.2,
        1e-300,
        0.5 * std::f64::consts::LN_2,
    ];
    for x in v.clone() {
        v.push(-x);
        v.push(f64::from_bits(x.to_bits().wrapping_add(1)));
        v.push(f64::from_bits(x.to_bits().wrapping_sub(1)));
    }
    v
}

/// Random bit patterns (every binade equally) plus dense uniform draws on `[lo, hi]`.
fn inputs(lo: f64, hi: f64, seed: u64) -> Vec<f64> {
    let mut rng = Rng::new(seed);
    let mut v = specials();
    for _ in 0..300_000 {
        let word = |r: &mut Rng| (r.uniform() * 4_294_967_296.0) as u64;
        v.push(f64::from_bits((word(&mut rng) << 32) | word(&mut rng)));
        v.push(lo + (hi - lo) * rng.uniform());
    }
    v
}

fn check(name: &str, f: fn(f64) -> f64, reference: fn(f64) -> f64, slice: fn(&[f64], &mut [f64]), xs: &[f64]) {
    let mut worst = (0u64, 0.0f64);
    for &x in xs {
        let d = ulps(f(x), reference(x));
        if d > worst.0 {
            worst = (d, x);
        }
    }
    assert!(worst.0 <= 2, "{name}: {} ulp at x = {:e} ({:e} vs libm {:e})", worst.0, worst.1, f(worst.1), reference(worst.1));
    // The dispatched kernel (whatever instruction set this machine has) equals the scalar formula.
    let mut out = vec![0.0; xs.len()];
    slice(xs, &mut out);
    for (x, o) in xs.iter().zip(&out) {
        assert!(o.to_bits() == f(*x).to_bits() || (o.is_nan() && x.is_nan()), "{name}({x:e}): slice {o:e} vs scalar {:e}", f(*x));
    }
    println!("{name}: max {} ulp from libm over {} inputs", worst.0, xs.len());
}

#[test]
fn exp_is_within_two_ulp_of_libm_everywhere() {
    check("exp", vmath::exp, f64::exp, vmath::exp_slice, &inputs(-750.0, 750.0, 1));
    // Subnormal results and the overflow threshold, densely.
    let xs: Vec<f64> =
        (0..200_000).map(|i| -745.2 + 37.0 * i as f64 / 200_000.0).chain((0..10_000).map(|i| 709.7 + 0.1 * i as f64 / 10_000.0)).collect();
    check("exp (subnormal/overflow edges)", vmath::exp, f64::exp, vmath::exp_slice, &xs);
}

#[test]
fn tanh_is_within_two_ulp_of_libm_everywhere() {
    check("tanh", vmath::tanh, f64::tanh, vmath::tanh_slice, &inputs(-25.0, 25.0, 2));
    let xs: Vec<f64> = (0..400_000).map(|i| -1.0 + 2.0 * i as f64 / 400_000.0).collect();
    check("tanh [-1, 1]", vmath::tanh, f64::tanh, vmath::tanh_slice, &xs);
    assert!(vmath::tanh(-0.0).is_sign_negative() && vmath::tanh(0.0).is_sign_positive());
}

#[test]
fn sigmoid_is_within_two_ulp_of_libm_everywhere() {
    check("sigmoid", vmath::sigmoid, libm_sigmoid, vmath::sigmoid_slice, &inputs(-40.0, 40.0, 3));
}
