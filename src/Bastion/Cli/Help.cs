namespace Bastion.Cli;

/// <summary>What `bastion --help` and `bastion COMMAND --help` print.</summary>
static class Help
{
    public const string Overview = """
        bastion — an application-level gateway (proxy firewall)

        usage:
          bastion run [-c FILE] [--no-watch]       run the gateway
          bastion check [-c FILE]                  validate a configuration: 'ok', or FILE:LINE:COL: message (exit 2)
          bastion explain [-c FILE] --listener NAME [attributes] REQUEST
                                                   what the policy decides for one request, and why
          bastion passwd [--stdin] FILE USER       add or replace USER in an htpasswd file (bcrypt)
          bastion ca init DIR [--rsa] [--name-constraint DOMAIN]...
                                                   create the TLS-inspection CA (ECDSA P-256, or RSA) in DIR
          bastion --version | --help | COMMAND --help

        Without -c, run, check and explain read /etc/bastion/bastion.yaml when it exists, else the embedded
        default: a forward proxy on 127.0.0.1:3128 for loopback clients, the admin page on 127.0.0.1:9090.
        Manual: man bastion; docs/ in the source tree.
        """;

    const string Run = """
        usage: bastion run [-c FILE] [--no-watch]

        Runs the gateway in the foreground and prints where each listener and the admin page listen.
          -c, --config FILE   the configuration (default: /etc/bastion/bastion.yaml if it exists, else the
                              embedded default: a forward proxy on 127.0.0.1:3128, admin on 127.0.0.1:9090)
          --no-watch          reload on SIGHUP and POST /api/reload only, not when FILE (or a file it names) changes

        SIGHUP reloads (an invalid configuration is refused and the running one stays); SIGINT/SIGTERM stop
        accepting, let open exchanges finish (limits.drain_timeout) and exit 0. Under systemd (NOTIFY_SOCKET) it
        reports READY, RELOADING and STOPPING.
        exit: 0 stopped cleanly; 1 could not start (an address in use, a log or certificate it cannot open);
              2 the configuration has errors.
        """;

    const string Check = """
        usage: bastion check [-c FILE]

        Validates a configuration without starting anything: 'ok' and exit 0, or one FILE:LINE:COL: message per
        problem and exit 2 (unknown keys, bad values, dangling names, unreadable files, a log that cannot be
        written, port clashes). Warnings (rules that can never match) do not fail the check.
          -c, --config FILE   default: /etc/bastion/bastion.yaml if it exists, else the embedded default
        """;

    const string ExplainText = """
        usage: bastion explain [-c FILE] --listener NAME [--source IP] [--user NAME] [--header 'Name: value']...
                               [--content-type TYPE] [--size N] [--sni NAME] [--resolve IP[,IP]] REQUEST

        Prints every rule tried for one request, which matched, and the verdict. Exit 0 allow, 1 deny, 2 usage.
        REQUEST in the listener's own terms: 'GET http://h/p', 'CONNECT h:443', 'h:port', 'STOR /pub/f',
        'RCPT TO:<a@b>'. --content-type and --size also ask the response rules. Where the client names the
        upstream, the addresses its name resolves to are judged too: --resolve gives them instead of the resolver.
        """;

    const string Passwd = """
        usage: bastion passwd [--stdin] FILE USER

        Adds or replaces USER in the htpasswd FILE with a bcrypt hash (created if missing; other lines kept).
        On a terminal the password is asked twice and not echoed; otherwise (or with --stdin) it is the first
        line of standard input:   printf '%s\n' "$PASS" | bastion passwd --stdin users.htpasswd alice
        """;

    const string Ca = """
        usage: bastion ca init DIR [--rsa] [--name-constraint DOMAIN]...

        Creates the TLS-inspection CA in DIR: ca.crt (install it in the clients' trust stores) and ca.key (mode
        0600). ECDSA P-256 unless --rsa (RSA 3072); --name-constraint limits it to DOMAIN and its subdomains.
        """;

    public static string? For(string command) => command switch
    {
        "run" => Run,
        "check" => Check,
        "explain" => ExplainText,
        "passwd" => Passwd,
        "ca" => Ca,
        _ => null,
    };
}
