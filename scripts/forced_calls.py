"""Forced tool calls on SmolLM2 under the tool's JSON schema: does every call parse and match its schema, and how
long does each take? Prints one line per prompt and a summary. Run: ``python scripts/forced_calls.py [--plain]``.

Ten prompts over eight tools: cities, units (enums and numbers), nested objects and arrays. ``ChatRain`` forces the
named tool (``tool_choice=<name>``); the reply is decoded under the call's schema (rain_core.constrained).
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import jsonschema
import torch

UNIT = {"type": "string", "enum": ["celsius", "fahrenheit"]}
TOOLS = {
    "get_weather": {"description": "Get the current weather in a city.",
                    "parameters": {"type": "object", "properties": {"location": {"type": "string"}, "unit": UNIT},
                                   "required": ["location"]}},
    "convert_units": {"description": "Convert a value from one unit to another.",
                      "parameters": {"type": "object", "properties": {
                          "value": {"type": "number"}, "from_unit": {"type": "string"}, "to_unit": {"type": "string"}},
                          "required": ["value", "from_unit", "to_unit"]}},
    "book_flight": {"description": "Book a flight.",
                    "parameters": {"type": "object", "properties": {
                        "origin": {"type": "string"}, "destination": {"type": "string"},
                        "passengers": {"type": "object", "properties": {"adults": {"type": "integer"},
                                                                        "children": {"type": "integer"}},
                                       "required": ["adults", "children"]}},
                        "required": ["origin", "destination", "passengers"]}},
    "create_event": {"description": "Put an event in the calendar.",
                     "parameters": {"type": "object", "properties": {
                         "title": {"type": "string"},
                         "start": {"type": "object", "properties": {"date": {"type": "string"}, "time": {"type": "string"}},
                                   "required": ["date", "time"]},
                         "attendees": {"type": "array", "items": {"type": "string"}}},
                         "required": ["title", "start", "attendees"]}},
    "get_population": {"description": "Population of a city in a given year.",
                       "parameters": {"type": "object", "properties": {"city": {"type": "string"},
                                                                       "year": {"type": "integer"}},
                                      "required": ["city", "year"]}},
    "get_distance": {"description": "Distance between two cities.",
                     "parameters": {"type": "object", "properties": {
                         "from_city": {"type": "string"}, "to_city": {"type": "string"},
                         "unit": {"type": "string", "enum": ["km", "miles"]}},
                         "required": ["from_city", "to_city", "unit"]}},
    "set_thermostat": {"description": "Set the heating to a temperature.",
                       "parameters": {"type": "object", "properties": {"temperature": {"type": "number"}, "unit": UNIT},
                                      "required": ["temperature", "unit"]}},
    "search_hotels": {"description": "Search hotels in a city.",
                      "parameters": {"type": "object", "properties": {
                          "city": {"type": "string"},
                          "filters": {"type": "object", "properties": {
                              "max_price": {"type": "number"}, "stars": {"type": "integer"},
                              "amenities": {"type": "array", "items": {"type": "string"}}},
                              "required": ["max_price"]}},
                          "required": ["city", "filters"]}},
}
PROMPTS = [
    ("get_weather", "What is the weather in Tokyo?"),
    ("get_weather", "Is it cold in Oslo right now? Tell me in fahrenheit."),
    ("convert_units", "How many kilometres is 26.2 miles?"),
    ("convert_units", "Convert 100 degrees Fahrenheit to Celsius."),
    ("book_flight", "Book a flight from Paris to Rome for two adults and one child."),
    ("create_event", "Schedule a team lunch on 2025-05-03 at 12:30 with Ana and Ben."),
    ("get_population", "What was the population of Lagos in 2010?"),
    ("get_distance", "How far is Berlin from Madrid in miles?"),
    ("set_thermostat", "Set the heating to 21 degrees Celsius."),
    ("search_hotels", "Find a hotel in Lisbon under 120 euros a night with a pool."),
]


def tool_schema(name: str) -> dict:
    return {"type": "function", "function": {"name": name, **TOOLS[name]}}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--max-iterations", type=int, default=4)
    parser.add_argument("--min-iterations", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    from rain_langchain import ChatRain

    chat = ChatRain(max_tokens=48, max_iterations=args.max_iterations, min_iterations=args.min_iterations, seed=0)
    chat.invoke("Hi")  # load the model and the grammar tokenizer before timing
    ok, times = 0, []
    for name, prompt in PROMPTS:
        start = time.perf_counter()
        reply = chat.bind_tools([tool_schema(name)], tool_choice=name).invoke(prompt)
        seconds = time.perf_counter() - start
        times.append(seconds)
        calls = reply.tool_calls
        valid = len(calls) == 1 and calls[0]["name"] == name
        if valid:
            try:
                jsonschema.validate(calls[0]["args"], TOOLS[name]["parameters"])
            except jsonschema.ValidationError:
                valid = False
        ok += valid
        shown = json.dumps(calls[0]["args"]) if calls else repr(reply.content)
        print(f"{'ok ' if valid else 'BAD'} {seconds:6.1f}s {reply.usage_metadata['output_tokens']:3d} tok  "
              f"{prompt[:44]:44s} {shown}", flush=True)
    print(f"{ok}/{len(PROMPTS)} calls parse against their schema; seconds per call: mean {sum(times) / len(times):.1f}, "
          f"max {max(times):.1f} (max_iterations={args.max_iterations}, min_iterations={args.min_iterations})")
    return 0 if ok == len(PROMPTS) else 1


if __name__ == "__main__":
    sys.exit(main())
