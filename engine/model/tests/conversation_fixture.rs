//! The conversation template and task prompts equal, byte for byte, what the reference's
//! conversation code produces (fixtures from `scripts/make_conversation_fixtures.py`, a
//! faithful re-implementation of LLaMA2-Accessory's `accessory/data/conversation/lib.py`).

use serde_json::Value;
use sphinx_core::job::CaptionDetail;
use sphinx_core::prompts;
use sphinx_model::conversation::{Template, Turn, TEMPLATE_NAMES};

mod common;
use common::Fixtures;

const CONVERSATION: Fixtures =
    Fixtures::new("conversation", "scripts/make_conversation_fixtures.py");
const TOKENIZER: Fixtures = Fixtures::new("tokenizer", "scripts/parity/tokenizer.py");

fn fixture() -> Value {
    CONVERSATION.json("conversation.json")
}

fn turns(qas: &Value) -> Vec<Turn> {
    qas.as_array()
        .expect("qas is a list")
        .iter()
        .map(|qa| Turn {
            question: qa[0].as_str().expect("question").to_owned(),
            answer: qa[1].as_str().map(str::to_owned),
        })
        .collect()
}

#[test]
fn every_reference_conversation_renders_byte_for_byte() {
    let fx = fixture();
    let cases = fx["cases"].as_array().expect("cases");
    assert!(cases.len() >= 2 * TEMPLATE_NAMES.len());
    for case in cases {
        let name = case["name"].as_str().unwrap();
        let template = Template::named(case["template"].as_str().unwrap()).unwrap();
        let out = template.process(&turns(&case["qas"])).unwrap();
        assert_eq!(out.conv, case["conv"].as_str().unwrap(), "conv of {name}");
        let expected: Vec<&str> = case["to_predict"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect();
        assert_eq!(out.to_predict, expected, "to_predict of {name}");
        assert_eq!(
            template.response_end_signal(),
            case["response_end_signal"].as_str().unwrap(),
            "response_end_signal of {name}"
        );
    }
}

#[test]
fn task_prompts_equal_the_reference_prompts() {
    let fx = fixture();
    assert_eq!(
        Template::default_conversation().system,
        fx["default_system"].as_str().unwrap()
    );
    let tasks = &fx["tasks"];
    let ours = [
        (
            "caption_detailed",
            prompts::caption(CaptionDetail::Detailed),
        ),
        ("caption_short", prompts::caption(CaptionDetail::Short)),
        ("ocr", prompts::ocr()),
        (
            "grounding:blue backpack",
            prompts::grounding("blue backpack").unwrap(),
        ),
        (
            "ask:What's in the image?",
            prompts::ask("What's in the image?").unwrap(),
        ),
    ];
    assert_eq!(ours.len(), tasks.as_object().unwrap().len());
    let cases = fx["cases"].as_array().unwrap();
    for (key, question) in ours {
        assert_eq!(question, tasks[key].as_str().unwrap(), "question of {key}");
        let case = cases
            .iter()
            .find(|c| c["name"].as_str() == Some(&format!("task:{key}")))
            .unwrap_or_else(|| panic!("fixture has no case task:{key}"));
        let prompt = Template::default_conversation()
            .prompt(&[Turn::ask(question)])
            .unwrap();
        assert_eq!(prompt, case["conv"].as_str().unwrap(), "prompt of {key}");
    }
}

/// The end signal's stop sequences catch the signal however the answer before it ends
/// (with the LLaMA-style test tokenizer of `scripts/parity/tokenizer.py`).
#[test]
fn stop_sequences_end_every_answer_that_reaches_the_signal() {
    let tok =
        sphinx_model::tokenizer::Tokenizer::from_file(&TOKENIZER.path("tokenizer.json")).unwrap();
    let template = Template::default_conversation();
    let stops = template.stop_sequences(&tok).unwrap();
    assert_eq!(stops[0], vec![tok.eos_id()]);
    assert!(stops.len() >= 2, "{stops:?}");
    for s in &stops[1..] {
        assert!(tok.decode(s).unwrap().contains("###"), "{s:?}");
    }
    for answer in [
        "Yes.",
        "<p>TOTAL</p>[0.10,0.20,0.30,0.40]",
        "a b c",
        "中文",
        "x\n",
    ] {
        let ids = tok
            .encode(
                &format!("{answer}{}", template.response_end_signal()),
                false,
                false,
            )
            .unwrap();
        assert!(
            stops[1..].iter().any(|s| ids.ends_with(s)),
            "{answer:?} -> {ids:?} ends with none of {stops:?}"
        );
    }
}
