#!/usr/bin/env python3
"""Reference prompts and box parses for engine/model/tests/conversation_fixture.rs and
engine/core/tests/boxes_prop.rs.

Writes into <repo>/target/fixtures/conversation/:
  conversation.json  for every template of the reference and a set of conversations
                     (single-turn task prompts, multi-turn, empty answers): the full
                     prompt string (`get_prompt()`), the `to_predict` list of
                     `process()`, and `response_end_signal`.
  boxes.json         model-style answers and what the reference's box reader
                     (`extract_and_color` in accessory/demos/multi_turn_mm_box.py)
                     extracts from them, sorted by position.

The `Conversation` class, its templates and `default_conversation` below are a faithful
re-implementation of LLaMA2-Accessory
  accessory/data/conversation/lib.py
at commit 3777c43940ddfb45d3bc1046b118ca4401747ee2 (github.com/Alpha-VLLM/LLaMA2-Accessory),
and the box reader of accessory/demos/multi_turn_mm_box.py at the same commit. They are
written out here (not imported) because the reference package pulls in fairscale,
gradio and CUDA-only code. The task questions are the ones the reference demo lists
(multi_turn_mm_box.py, the Gradio header).

Run: .venv/bin/python scripts/make_conversation_fixtures.py
"""

import dataclasses
import json
import pathlib
import re
from enum import Enum, auto
from typing import List, Tuple

REPO = pathlib.Path(__file__).resolve().parent.parent
OUT = REPO / "target" / "fixtures" / "conversation"
REFERENCE = "Alpha-VLLM/LLaMA2-Accessory@3777c43940ddfb45d3bc1046b118ca4401747ee2"


# ---- accessory/data/conversation/lib.py -------------------------------------------


class SeparatorStyle(Enum):
    SINGLE = auto()
    TWO = auto()


@dataclasses.dataclass
class Conversation:
    system: str
    roles: Tuple[str, str]
    messages: List
    sep_style: SeparatorStyle = SeparatorStyle.SINGLE
    sep: str = "###"
    sep2: str = None

    def process(self):
        l_to_predict = []
        if self.sep_style == SeparatorStyle.SINGLE:
            ret = self.system + "\n\n" + self.sep
            for i, (role, message) in enumerate(self.messages):
                if message is not None:
                    if type(message) is tuple:
                        message, _, _ = message
                    ret += " " + role + ": " + message + "\n" + self.sep
                    if role == self.roles[1]:
                        l_to_predict.append(message + "\n" + self.sep)
                else:
                    assert i == len(self.messages) - 1, "only last message can be None"
                    ret += " " + role + ":"
        elif self.sep_style == SeparatorStyle.TWO:
            seps = [self.sep, self.sep2]
            ret = self.system + seps[0]
            for i, (role, message) in enumerate(self.messages):
                if message:
                    if type(message) is tuple:
                        message, _, _ = message
                    ret += " " + role + ": " + message + seps[i % 2]
                    if role == self.roles[1]:
                        l_to_predict.append(message + seps[i % 2])
                else:
                    assert i == len(self.messages) - 1, "only last message can be None"
                    ret += " " + role + ":"
        else:
            raise ValueError(f"Invalid style: {self.sep_style}")
        return {"conv": ret, "to_predict": l_to_predict}

    def get_prompt(self):
        return self.process()["conv"]

    def append_message(self, role, message):
        self.messages.append([role, message])

    def load_qas(self, qas):
        self.messages = []
        for q, a in qas:
            self.append_message(self.roles[0], q)
            self.append_message(self.roles[1], a)

    @property
    def response_end_signal(self):
        return "\n" + self.sep if self.sep_style == SeparatorStyle.SINGLE else self.sep2


HUMAN_SYSTEM = (
    "A chat between a curious human and an artificial intelligence assistant. "
    "The assistant gives helpful, detailed, and polite answers to the human's questions."
)
USER_SYSTEM = (
    "A chat between a curious user and an artificial intelligence assistant. "
    "The assistant gives helpful, detailed, and polite answers to the user's questions."
)
LLAVA_SYSTEM = (
    "You are LLaVA, a large language and vision assistant trained by UW Madison WAIV Lab."
    "You are able to understand the visual content that the user provides, and assist the user with a variety of tasks using natural language."
    "Follow the instructions carefully and explain your answers in detail."
)


def conv_v1_2():
    return Conversation(HUMAN_SYSTEM, ("Human", "Assistant"), [], SeparatorStyle.SINGLE, "###")


def simple_conv():
    return Conversation(HUMAN_SYSTEM, ("Human", "Assistant"), [], SeparatorStyle.SINGLE, "###")


def simple_conv_multimodal():
    return Conversation(LLAVA_SYSTEM, ("Human", "Assistant"), [], SeparatorStyle.SINGLE, "###")


def conv_llava_v1():
    return Conversation(LLAVA_SYSTEM, ("USER", "ASSISTANT"), [], SeparatorStyle.TWO, " ", "</s>")


def conv_bair_v1():
    return Conversation("BEGINNING OF CONVERSATION:", ("USER", "GPT"), [], SeparatorStyle.TWO, " ", "</s>")


def conv_vicuna_v1_1():
    return Conversation(USER_SYSTEM, ("USER", "ASSISTANT"), [], SeparatorStyle.TWO, " ", "</s>")


default_conversation = conv_v1_2
conv_templates = {
    "default": conv_v1_2,
    "simple": simple_conv,
    "multimodal": simple_conv_multimodal,
    "llava_v1": conv_llava_v1,
    "v1": conv_v1_2,
    "bair_v1": conv_bair_v1,
    "vicuna_v1_1": conv_vicuna_v1_1,
}

# ---- accessory/demos/multi_turn_mm_box.py: task questions and extract_and_color ----

TASK_QUESTIONS = {
    "caption_detailed": "Generate a detailed description about the image.",
    "caption_short": "Provide a one-sentence caption for the provided image.",
    "ocr": "Please detect all texts and provide their bounding box coordinate.",
    "grounding:blue backpack": (
        "Please provide the bounding box coordinate of the region this sentence describes: blue backpack"
    ),
    "ask:What's in the image?": "What's in the image?",
}


def reference_boxes(input_string):
    """extract_and_color's result list (text, float lists), colours and markdown dropped.

    Same two passes as the reference: phrase matches replaced right to left with a
    `|||` marker, then bare lists not preceded by the marker. The reference returns
    phrase matches last-first, then bare lists last-first; the Rust test compares the
    spans as a multiset, since its parser reports them in reading order.
    """
    result = []
    markdown_str = input_string
    pattern = r"<p>(.*?)<\/p>\s*(\[[\d.,;\s]*\])"
    matches = sorted(re.finditer(pattern, markdown_str), key=lambda x: x.start(), reverse=True)
    for match in matches:
        text, list_str = match.groups()
        float_list = [[float(x) for x in re.findall(r"\d+\.\d+", _)] for _ in list_str.split(";")]
        result.append({"text": text, "boxes": float_list})
        colored_text = f"<span>{text}|||{list_str}</span>"
        markdown_str = markdown_str[: match.span()[0]] + colored_text + markdown_str[match.span()[1] :]
    pattern2 = r"(?<!\|\|\|)(\[[\d.,;\s]*\])"
    matches2 = sorted(re.finditer(pattern2, markdown_str), key=lambda x: x.start(), reverse=True)
    for match in matches2:
        list_str = match.groups()[0]
        float_list = [[float(x) for x in re.findall(r"\d+\.\d+", _)] for _ in list_str.split(";")]
        result.append({"text": "", "boxes": float_list})
    return result


BOX_ANSWERS = [
    "<p>INVOICE</p>[0.12,0.05,0.41,0.09]<p>Total: $1,234.00</p>[0.55,0.80,0.93,0.84]",
    "A <p>man</p> [0.10,0.20,0.30,0.40;0.50,0.50,0.60,0.70] stands near [0.01,0.02,0.03,0.04].",
    "[0.25,0.31,0.75,0.62]",
    "The <p>logo</p>[0.00,0.00,1.00,0.15] and the <p>signature</p>\n[0.62,0.88,0.91,0.97].",
    "<p>Chapter 1</p>[0.08,0.10,0.35,0.14]\n<p>It was a dark and stormy night</p>[0.08,0.16,0.92,0.20;0.08,0.21,0.60,0.25]",
    "<p>héllo wörld</p>[0.10,0.10,0.20,0.20] [ 0.30 , 0.30 , 0.40 , 0.40 ]",
]


def conversations():
    questions = list(TASK_QUESTIONS.items())
    cases = []
    for name, q in questions:
        cases.append({"name": f"task:{name}", "template": "default", "qas": [[q, None]]})
    multi = [
        [TASK_QUESTIONS["ocr"], "<p>INVOICE</p>[0.12,0.05,0.41,0.09]"],
        [TASK_QUESTIONS["grounding:blue backpack"], "[0.10,0.20,0.30,0.40]"],
        ["And the total?", None],
    ]
    for template in conv_templates:
        cases.append({"name": f"multi:{template}", "template": template, "qas": multi})
        cases.append({"name": f"closed:{template}", "template": template, "qas": multi[:2]})
    # The SINGLE style appends an empty answer (`is not None`); TWO treats it as missing.
    cases.append({"name": "empty_answer:default", "template": "default", "qas": [["Hi", ""], ["Again", None]]})
    cases.append({"name": "unicode:default", "template": "default", "qas": [["Ünïcode? 中文\nline two", None]]})
    for c in cases:
        conv = conv_templates[c["template"]]()
        conv.load_qas(c["qas"])
        r = conv.process()
        c["conv"] = r["conv"]
        c["to_predict"] = r["to_predict"]
        c["response_end_signal"] = conv.response_end_signal
    return cases


def main():
    OUT.mkdir(parents=True, exist_ok=True)
    conv = {
        "reference": REFERENCE,
        "default_template": "default",
        "default_system": default_conversation().system,
        "tasks": TASK_QUESTIONS,
        "cases": conversations(),
    }
    (OUT / "conversation.json").write_text(json.dumps(conv, indent=1, ensure_ascii=False))
    boxes = {"reference": REFERENCE, "cases": [{"answer": a, "spans": reference_boxes(a)} for a in BOX_ANSWERS]}
    (OUT / "boxes.json").write_text(json.dumps(boxes, indent=1, ensure_ascii=False))
    print(f"make_conversation_fixtures: wrote {len(conv['cases'])} conversations, {len(BOX_ANSWERS)} box answers to {OUT}")


if __name__ == "__main__":
    main()
