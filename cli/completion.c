/* `lbctl completion bash`: a bash completion script written from lbctl's command and option
 * tables, so that it knows exactly the commands and flags that lbctl parses. POOL and
 * POOL/BACKEND arguments are completed from `lbctl --json backends` of the running lb. */
#include <stdio.h>
#include <string.h>

#include "cli/lbctl.h"

/* The parts of the script that do not depend on the tables. */
static const char script_head[] =
    "# bash completion for lbctl; enable with: source <(lbctl completion bash)\n"
    "# Written by `lbctl completion bash` from lbctl's command table: regenerate, do not "
    "edit.\n"
    "\n"
    "# _lbctl_targets pools|backends LBCTL [-s SOCKET]: the running lb's pool names, or its\n"
    "# backends as POOL/BACKEND, read from `lbctl --json backends` (one member per line).\n"
    "_lbctl_targets()\n"
    "{\n"
    "\tlocal what=$1 line pool= last=\n"
    "\tshift\n"
    "\twhile IFS= read -r line; do\n"
    "\t\tcase $line in\n"
    "\t\t'    \"pool\": \"'*)\n"
    "\t\t\tpool=${line#*\\\": \\\"}\n"
    "\t\t\tpool=${pool%\\\",}\n"
    "\t\t\tif [[ $what == pools && $pool != \"$last\" ]]; then\n"
    "\t\t\t\tprintf '%s\\n' \"$pool\"\n"
    "\t\t\t\tlast=$pool\n"
    "\t\t\tfi\n"
    "\t\t\t;;\n"
    "\t\t'    \"name\": \"'*)\n"
    "\t\t\tline=${line#*\\\": \\\"}\n"
    "\t\t\t[[ $what == backends ]] && printf '%s\\n' \"$pool/${line%\\\",}\"\n"
    "\t\t\t;;\n"
    "\t\tesac\n"
    "\tdone < <(\"$@\" --json backends 2>/dev/null)\n"
    "}\n"
    "\n"
    "_lbctl()\n"
    "{\n"
    "\tlocal cur=${COMP_WORDS[COMP_CWORD]} prev=${COMP_WORDS[COMP_CWORD-1]}\n"
    "\tlocal lbctl=(\"${COMP_WORDS[0]/#\\~/$HOME}\") cmd= npos=0 i w opts args=()\n"
    "\n"
    "\t# The command is the first word that is not an option or an option's value.\n"
    "\tfor ((i = 1; i < COMP_CWORD; i++)); do\n"
    "\t\tw=${COMP_WORDS[i]}\n"
    "\t\tcase $w in\n"
    "\t\t-s | --socket) lbctl+=(-s \"${COMP_WORDS[i+1]}\"); i=$((i + 1)) ;;\n";

static const char script_tail[] =
    "\tesac\n"
    "\tif [[ $cur == -* ]]; then\n"
    "\t\tCOMPREPLY=($(compgen -W \"$opts\" -- \"$cur\"))\n"
    "\t\treturn\n"
    "\tfi\n"
    "\tw=${args[npos]}\n"
    "\tw=${w#[}\n"
    "\tw=${w%]}\n"
    "\tcase $w in\n"
    "\tPOOL) COMPREPLY=($(compgen -W \"$(_lbctl_targets pools \"${lbctl[@]}\")\" -- "
    "\"$cur\")) ;;\n"
    "\tPOOL/BACKEND) COMPREPLY=($(compgen -W \"$(_lbctl_targets backends \"${lbctl[@]}\")\" "
    "-- \"$cur\")) ;;\n"
    "\t[a-z]*) COMPREPLY=($(compgen -W \"${w//|/ }\" -- \"$cur\")) ;;\n"
    "\tesac\n"
    "}\n"
    "\n"
    "complete -F _lbctl lbctl\n";

/* The flags of the options selected by global / mask, space-separated. */
static void print_flags(bool global, unsigned mask)
{
	const char *sep = "";

	for (int i = 0; i < OPT_COUNT; i++) {
		const struct lbctl_opt *o = &lbctl_opts[i];
		if (o->global != global || (!global && !(mask & OPT_BIT(i))))
			continue;
		if (o->alias) {
			printf("%s%s", sep, o->alias);
			sep = " ";
		}
		printf("%s%s", sep, o->name);
		sep = " ";
	}
}

/* "--weight | --max-conns" for a case pattern: the options that take a value, but --socket,
 * whose value the script reads. */
static void print_value_options(void)
{
	const char *sep = "";

	for (int i = 0; i < OPT_COUNT; i++) {
		const struct lbctl_opt *o = &lbctl_opts[i];
		if (!o->value || i == OPT_SOCKET)
			continue;
		if (o->alias) {
			printf("%s%s", sep, o->alias);
			sep = " | ";
		}
		printf("%s%s", sep, o->name);
		sep = " | ";
	}
}

int lbctl_completion(const struct lbctl_args *a)
{
	char w[SPEC_WORD_MAX];
	bool opt;

	(void)a; /* the spec allows only "bash" */
	fputs(script_head, stdout);
	/* Other options with a value skip it; any other dash word is a flag. */
	fputs("\t\t", stdout);
	print_value_options();
	fputs(") i=$((i + 1)) ;;\n", stdout);
	fputs("\t\t-?*) ;;\n"
	      "\t\t*) if [[ -z $cmd ]]; then cmd=$w; else npos=$((npos + 1)); fi ;;\n"
	      "\t\tesac\n"
	      "\tdone\n"
	      "\tcase $prev in\n"
	      "\t-s | --socket) COMPREPLY=($(compgen -f -- \"$cur\")); return ;;\n"
	      "\t",
	      stdout);
	print_value_options();
	fputs(") return ;; # a value of the user's choosing\n"
	      "\tesac\n"
	      "\n"
	      "\topts=\"",
	      stdout);
	print_flags(true, 0);
	fputs("\"\n"
	      "\tcase $cmd in\n"
	      "\t'')\n"
	      "\t\t[[ $cur == -* ]] || opts=\"",
	      stdout);
	for (size_t i = 0; i < lbctl_ncmds; i++)
		printf("%s%s", i ? " " : "", lbctl_cmds[i].name);
	fputs("\"\n"
	      "\t\tCOMPREPLY=($(compgen -W \"$opts\" -- \"$cur\"))\n"
	      "\t\treturn\n"
	      "\t\t;;\n",
	      stdout);
	for (size_t i = 0; i < lbctl_ncmds; i++) {
		const struct lbctl_cmd *c = &lbctl_cmds[i];
		printf("\t%s)\n", c->name);
		if (c->opts) {
			fputs("\t\topts+=\" ", stdout);
			print_flags(false, c->opts);
			fputs("\"\n", stdout);
		}
		fputs("\t\targs=(", stdout);
		for (int n = 0; lbctl_spec_word(c->args, n, w, sizeof(w), &opt) >= 0; n++)
			printf("%s'%s%s%s'", n ? " " : "", opt ? "[" : "", w, opt ? "]" : "");
		fputs(")\n\t\t;;\n", stdout);
	}
	fputs("\t*) return ;; # not a command lbctl knows\n", stdout);
	fputs(script_tail, stdout);
	return fflush(stdout) == 0 ? LBCTL_OK : LBCTL_ERROR;
}
