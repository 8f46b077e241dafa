using System.Net;
using Bastion.Configuration;
using Bastion.Hosting;
using Bastion.Policy;
using Bastion.Policy.Canonical;
using Bastion.Relay;

namespace Bastion.Cli;

/// <summary>`bastion explain`: one request in the listener's own terms, judged by its policy, with the trace.</summary>
public static class Explain
{
    /// <summary>`--header` lines in order; a name given twice is two field lines, as on the wire.</summary>
    sealed class Headers(List<(string Name, string Value)> lines) : IHeaderSource
    {
        public string? Get(string name)
        {
            var values = lines.Where(l => l.Name.Equals(name, StringComparison.OrdinalIgnoreCase)).Select(l => l.Value).ToList();
            return values.Count == 0 ? null : string.Join(", ", values);
        }

        public bool TryGetLine(string name, int index, out string value)
        {
            foreach (var (n, v) in lines)
            {
                if (!n.Equals(name, StringComparison.OrdinalIgnoreCase) || index-- > 0) continue;
                value = v;
                return true;
            }
            value = "";
            return false;
        }
    }

    public static int Run(string[] args)
    {
        var file = Commands.Option(ref args, "-c", "--config") ?? throw new Commands.UsageException("explain needs -c FILE");
        var name = Commands.Option(ref args, "--listener") ?? throw new Commands.UsageException("explain needs --listener NAME");
        var source = Commands.Option(ref args, "--source");
        var user = Commands.Option(ref args, "--user");
        var contentType = Commands.Option(ref args, "--content-type");
        var size = Commands.Option(ref args, "--size");
        var sni = Commands.Option(ref args, "--sni");
        var headers = Commands.Options(ref args, "--header");
        var resolveTo = Commands.Options(ref args, "--resolve");
        if (args.Length == 0) throw new Commands.UsageException("explain needs a REQUEST (like 'GET http://example.com/' or 'CONNECT example.com:443')");
        var request = string.Join(' ', args);

        Runtime rt;
        try { rt = Runtime.Load(file); }
        catch (ConfigException e)
        {
            foreach (var err in e.Errors) Console.Error.WriteLine(err);
            return Commands.ExitUsage;
        }
        var listener = rt.Listener(name) ?? throw new Commands.UsageException(
            $"no listener '{name}' in {file} (listeners: {string.Join(", ", rt.Config.Listeners.Select(l => l.Name))})");

        var a = new RequestAttributes();
        if (source is not null)
        {
            if (!IPAddress.TryParse(source, out var ip)) throw new Commands.UsageException($"--source '{source}' is not an IP address");
            a.Source = ip;
        }
        else a.Source = IPAddress.Loopback;
        a.User = user;
        a.PathIgnoreCase = listener.PathIgnoreCase;
        var target = new CanonicalTarget();
        var parsed = Parse(listener, request, a, target, out var error);
        if (headers.Count > 0)
        {
            var lines = new List<(string, string)>();
            foreach (var h in headers)
            {
                int colon = h.IndexOf(':');
                if (colon <= 0) throw new Commands.UsageException($"--header '{h}' is not 'Name: value'");
                lines.Add((h[..colon].Trim(), h[(colon + 1)..].Trim()));
            }
            a.Headers = new Headers(lines);
        }
        if (sni is not null) a.Sni = HostName.Normalize(sni) ?? sni;
        var resolved = new List<IPAddress>();
        foreach (var r in resolveTo)
        {
            foreach (var one in r.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
            {
                if (!IPAddress.TryParse(one, out var ip)) throw new Commands.UsageException($"--resolve '{one}' is not an IP address");
                resolved.Add(ip);
            }
        }

        var policy = rt.PolicyFor(listener);
        var trace = new PolicyTrace();
        Console.WriteLine($"listener {listener.Name} ({ListenerTypes.Name(listener.Type)}), policy {policy.Name}, default {(policy.Default == Verdict.Allow ? "allow" : "deny")}");
        Console.WriteLine($"request: {request}  source={a.Source}{(a.User is null ? "" : $" user={a.User}")}");
        // What the live gateway would refuse before asking the policy at all.
        if (parsed != TargetStatus.Ok)
        {
            Console.WriteLine($"verdict: deny (400 {(parsed == TargetStatus.Ambiguous ? "ambiguous request target" : "malformed request target")}: {error})");
            return Commands.ExitDeny;
        }
        if (a.Url is not null || a.Path is not null)
            Console.WriteLine($"judged as: host={a.Host} port={a.Port} path={a.Path}{(a.Url is null ? "" : $" url={a.Url}")}" +
                (target.Ambiguity is null ? "" : $"  (ambiguous, passed: {target.Ambiguity})") + $"  path_case={(a.PathIgnoreCase ? "insensitive" : "sensitive")}");
        else if (a.Host is not null) Console.WriteLine($"judged as: host={a.Host} port={a.Port}");
        if (listener.RefuseConflictingHeaders && a.Headers is not null && policy.ConflictingHeader(a.Headers) is { } conflict)
        {
            Console.WriteLine($"verdict: deny (400 conflicting values of header '{conflict}', which a rule judges)");
            return Commands.ExitDeny;
        }
        long sizeValue = -1;
        if (size is not null && !Units.TryParseSize(size, out sizeValue))
            throw new Commands.UsageException($"--size '{size}' is not a size");
        Decision d;
        if (listener.Type == ListenerType.Smtp)
        {
            // smtp decides once per command; `size` is the message's own (SPEC 2.1).
            a.Size = sizeValue;
            d = policy.EvaluateAll(a, trace);
        }
        else
        {
            d = policy.Evaluate(a, trace);
            if (d.Allowed && ConnectsWhereClientSays(listener, a) && policy.HasAddressRules)
                d = ResolveStep(rt, listener, policy, a, resolved, trace) ?? d;
            if (d.Allowed && (contentType is not null || size is not null))
            {
                a.ContentType = contentType;
                a.Size = sizeValue;
                trace.Add("response:");
                var rd = policy.EvaluateResponse(a, trace);
                if (!rd.Allowed) d = rd;
            }
        }
        foreach (var line in trace.Lines) Console.WriteLine("  " + line);
        Console.WriteLine($"verdict: {d.VerdictText} (rule {d.RuleName}{(d.Reason is null ? "" : $": {d.Reason}")})");
        return d.Allowed ? Commands.ExitOk : Commands.ExitDeny;
    }

    /// <summary>Listeners whose upstream the client names: their addresses are judged after DNS (SPEC 2.1).</summary>
    static bool ConnectsWhereClientSays(ListenerConfig l, RequestAttributes a) =>
        a.Host is not null && (l.Type is ListenerType.HttpProxy or ListenerType.Socks5
            || (l.Type is ListenerType.Ftp or ListenerType.Smtp && l.Upstream is null));

    /// <summary>The resolution step: the name's addresses (from --resolve, or the gateway's own resolver), each judged.</summary>
    static Decision? ResolveStep(Runtime rt, ListenerConfig listener, CompiledPolicy policy, RequestAttributes a, List<IPAddress> given, PolicyTrace trace)
    {
        IPAddress[] addresses;
        string how;
        if (IPAddress.TryParse(a.Host, out var literal))
        {
            addresses = [literal];
            var eff = TargetAddress.Effective(literal);
            how = eff.Equals(literal) ? "an IP literal" : $"an IP literal, which connects to {eff}";
        }
        else if (given.Count > 0)
        {
            addresses = [.. given];
            how = "--resolve";
        }
        else
        {
            var (found, err) = rt.Resolver.ResolveAsync(a.Host!, listener.Limits.ConnectTimeout, CancellationToken.None).AsTask().GetAwaiter().GetResult();
            if (found.Length == 0)
            {
                trace.Add($"resolve {a.Host}: {err} (the gateway would answer that it cannot connect)");
                return null;
            }
            addresses = found;
            how = rt.Resolver.SystemDns ? "the resolver (hosts file, then DNS)" : "the resolver's hosts file (dns: off)";
        }
        trace.Add($"resolve {a.Host} -> {string.Join(", ", addresses.Select(x => x.ToString()))} ({how}); address rules on each:");
        var judged = Connector.Judge(policy, a, addresses);
        foreach (var ip in addresses) policy.JudgeAddress(a, ip, trace);
        if (judged.Denied is { } denied)
        {
            trace.Add($"=> every address denied: the request is refused");
            return denied;
        }
        trace.Add($"=> connects to {string.Join(", ", judged.Allowed.Select(x => x.ToString()))}");
        return null;
    }

    /// <summary>
    /// Fills the attributes a listener of this type would supply for the request text, through the same
    /// normalisation the listener uses (canonical target, host names). Malformed or Ambiguous: what the gateway would
    /// refuse with 400; text that is no request at all is a usage error.
    /// </summary>
    public static TargetStatus Parse(ListenerConfig listener, string request, RequestAttributes a, CanonicalTarget target, out string? error)
    {
        error = null;
        var type = listener.Type;
        var parts = request.Trim().Split(' ', 2, StringSplitOptions.RemoveEmptyEntries);
        switch (type)
        {
            case ListenerType.HttpProxy or ListenerType.HttpReverse:
                if (parts.Length != 2) throw new Commands.UsageException("an HTTP request is 'METHOD URL' (or 'CONNECT host:port')");
                a.Method = parts[0].ToUpperInvariant();
                if (a.Method == "CONNECT")
                {
                    var s = RequestTarget.ParseAuthority(parts[1], out var host, out var port, out error);
                    if (s != TargetStatus.Ok) return s;
                    a.Host = host;
                    a.Port = port;
                    return TargetStatus.Ok;
                }
                var status = RequestTarget.Parse(parts[1], listener.AmbiguousPaths, target, out error);
                if (status == TargetStatus.Malformed) return status;
                if (status != TargetStatus.Malformed && (target.Host is null || target.Scheme is not ("http" or "https")))
                    throw new Commands.UsageException($"'{parts[1]}' is not an absolute http(s) URL");
                target.ApplyTo(a);
                if (type == ListenerType.HttpReverse) a.Port = target.Port;
                return status;
            case ListenerType.Socks5 or ListenerType.Tcp:
                if (!HostPort.TryParse(request.Trim(), out var t)) throw new Commands.UsageException($"'{request}' is not host:port");
                if (type == ListenerType.Socks5)
                {
                    if (!HostName.TryNormalize(t!.Host, out var h, out var why)) return Malformed($"bad host: {why}", out error);
                    a.Host = h;
                }
                a.Port = t!.Port;
                return TargetStatus.Ok;
            case ListenerType.Ftp:
                a.Command = parts[0].ToUpperInvariant();
                if (parts.Length == 2) a.Path = parts[1];
                return TargetStatus.Ok;
            case ListenerType.Smtp:
                var verb = parts[0].ToUpperInvariant();
                a.Command = verb;
                var arg = parts.Length == 2 ? parts[1] : "";
                int colon = arg.IndexOf(':');
                var addr = colon >= 0 ? arg[(colon + 1)..].Trim().Trim('<', '>') : arg.Trim('<', '>');
                if (verb == "MAIL") a.MailFrom = addr;
                else if (verb == "RCPT") a.RcptTo = [addr];
                return TargetStatus.Ok;
        }
        throw new Commands.UsageException("unsupported listener type");
    }

    static TargetStatus Malformed(string why, out string? error)
    {
        error = why;
        return TargetStatus.Malformed;
    }
}
