using System.Text;
using Bastion.Configuration;
using Bastion.Gateway;
using Bastion.Hosting;
using Bastion.Policy;

namespace Bastion.Protocols.Smtp;

/// <summary>smtp: the mail gateway. `explain` takes `MAIL FROM:&lt;a@b&gt;` or `RCPT TO:&lt;a@b&gt;` (with --size for the message).</summary>
public sealed class SmtpDescriptor : IListenerDescriptor
{
    public ListenerType Type => ListenerType.Smtp;
    public string Name => "smtp";
    public IReadOnlySet<string> Attributes { get; } = new HashSet<string>
        { "source", "user", "group", "port", "command", "mail_from", "rcpt_to", "size", "time", "not" };

    public IReadOnlyList<OwnKey> OwnKeys { get; } =
        [new OwnKey("smtp", l => l.Smtp is not null, "the smtp section is for smtp listeners")];

    /// <summary>One moment of decision per command; at end of data `size` is the message's own (SPEC 2.1).</summary>
    public bool HasResponsePhase => false;

    public Decision Decide(CompiledPolicy policy, RequestAttributes a, PolicyTrace? trace = null) => policy.EvaluateAll(a, trace);

    public void Validate(BastionConfig root, ListenerConfig l, Action<SourcePos, string> error)
    {
        if (l.Upstream is null) error(l.Pos, $"listener '{l.Name}': smtp needs 'upstream: host:port' or an upstream group name");
        else if (!root.Upstreams.ContainsKey(l.Upstream) && SmtpListener.ParseTarget(l.Upstream) is null)
            error(l.PosOf("upstream"), $"listener '{l.Name}': upstream '{l.Upstream}' is neither host:port nor a group under 'upstreams:'");
        else if (SmtpListener.ResolveTargets(root, l).Count == 0)
            error(l.PosOf("upstream"), $"listener '{l.Name}': upstream group '{l.Upstream}' has no host:port target");
        if (l.Smtp is not { } s)
        {
            if (l.Authenticate) error(l.PosOf("authenticate"), $"listener '{l.Name}': AUTH is offered only after STARTTLS: set smtp.tls, or smtp.auth_without_tls: true");
            return;
        }
        if (s.Tls is { } t)
        {
            if (!File.Exists(root.Resolve(t.Cert))) error(t.Pos, $"listener '{l.Name}': smtp.tls: cannot read certificate {root.Resolve(t.Cert)}");
            if (!File.Exists(root.Resolve(t.Key))) error(t.Pos, $"listener '{l.Name}': smtp.tls: cannot read key {root.Resolve(t.Key)}");
        }
        else if (s.ExtensionsGiven && s.Extensions.Contains("STARTTLS"))
            error(s.Pos, $"listener '{l.Name}': smtp.extensions lists STARTTLS but smtp.tls names no certificate");
        if (s.UpstreamCa is { } ca && !File.Exists(root.Resolve(ca)))
            error(s.Pos, $"listener '{l.Name}': smtp.upstream_ca: cannot read {root.Resolve(ca)}");
        // AUTH is checked against identity.users, so it needs `authenticate: true`, and a leg it may be offered on.
        bool listsAuth = !s.ExtensionsGiven || s.Extensions.Contains("AUTH");
        if (l.Authenticate && !listsAuth)
            error(s.Pos, $"listener '{l.Name}': authenticate is on but smtp.extensions does not list AUTH");
        if (!l.Authenticate && s.ExtensionsGiven && s.Extensions.Contains("AUTH"))
            error(s.Pos, $"listener '{l.Name}': smtp.extensions lists AUTH but the listener does not authenticate (authenticate: true)");
        if (!l.Authenticate && s.Auth == "required")
            error(s.Pos, $"listener '{l.Name}': smtp.auth: required needs authenticate: true");
        if (l.Authenticate && s.Tls is null && !s.AuthWithoutTls)
            error(s.Pos, $"listener '{l.Name}': AUTH is offered only after STARTTLS: set smtp.tls, or smtp.auth_without_tls: true");
    }

    public bool TryExplain(string request, ListenerConfig listener, Runtime runtime, RequestAttributes a, out string? error)
    {
        error = null;
        var smtp = listener.Smtp ?? SmtpListener.DefaultConfig;
        var cmd = new SmtpCommand();
        // Parsed as the live session parses it, with every extension the listener may offer.
        var opt = new CommandOptions(true, true, true, false, smtp.AllowAddressHacks);
        var e = SmtpCommandParser.Parse(Encoding.UTF8.GetBytes(HeaderValue.TrimOws(request).ToString()), opt, cmd);
        if (e.IsError) { error = $"'{request}': {e.Code} {e.Reason}"; return false; }
        var size = a.Size;
        switch (cmd.Verb)
        {
            case SmtpVerb.Mail:
                SmtpAttributes.ForMail(a, cmd.Path!, cmd.DeclaredSize >= 0 ? cmd.DeclaredSize : size);
                return true;
            case SmtpVerb.Rcpt:
                SmtpAttributes.ForRcpt(a, null, cmd.Path!, size);
                return true;
            default:
                error = "an smtp request is 'MAIL FROM:<a@b>' or 'RCPT TO:<a@b>'";
                return false;
        }
    }

    public IGatewayListener Create(ListenerContext ctx) => new SmtpListener(ctx);
}
