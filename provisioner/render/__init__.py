"""Turn a Plan into text (terminal), Markdown (pull-request comment) or JSON.

Pure functions: nothing here reads or writes anything. One module a plan, imported from where it is
defined, so that a command loads only the plan it prints (`provisioner validate` reaches the JSON plan
through a saved plan's marker, and never the text or Markdown plans):

    text.py       render_text, text_chunks, part_text: the Terraform-style plan for a terminal
    markdown.py   render_markdown, escape_markdown: the pull-request comment
    jsonplan.py   render_json, plan_to_json, JSON_FORMAT_VERSION: the document for tools (its format
                  is described there)
    common.py     what they share: the actions' words, the counts, credit usage as cells
    apply_outcome.py  an apply's closing line, and the summaries of one that stopped (outage, failures)
    manifest_yaml.py  an instance's listed batches as a manifest file's text (import
                  --generate-config-out): declarations, keys derived from names, the YAML
"""
