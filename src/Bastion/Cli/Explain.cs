using System.Net;
using Bastion.Configuration;
using Bastion.Gateway;
using Bastion.Hosting;
using Bastion.Policy;
using Bastion.Policy.Canonical;

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
        var descriptor = ListenerDescriptors.Find(listener.Type) ?? throw new Commands.UsageException(
            $"listener '{name}' is of type {ListenerTypes.Name(listener.Type)}, which this version of bastion does not build");
        if (!descriptor.TryExplain(request, listener, rt, a, out var error)) throw new Commands.UsageException(error!);
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
        // What the live gateway refuses before asking the policy at all.
        if (ExplainText.Refusal(listener, request) is { } refusal)
        {
            Console.WriteLine($"verdict: deny ({refusal})");
            return Commands.ExitDeny;
        }
        if (a.Path is not null)
            Console.WriteLine($"judged as: host={a.Host} port={a.Port} path={a.Path}{(a.Url is null ? "" : $" url={a.Url}")} path_case={(a.PathIgnoreCase ? "insensitive" : "sensitive")}");
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
        if (!descriptor.HasResponsePhase)
        {
            // Decided once per command, `size` being the request's own (smtp: the message, SPEC 2.1).
            a.Size = sizeValue;
            d = descriptor.Decide(policy, a, trace);
        }
        else
        {
            d = descriptor.Decide(policy, a, trace);
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
}

/// <summary>REQUEST texts shared by listener types that speak HTTP.</summary>
public static class ExplainText
{
    /// <summary>
    /// `METHOD URL` or `CONNECT host:port`, normalised as the live session does (<see cref="RequestTarget"/>): the
    /// attributes judged are those of the canonical form.
    /// </summary>
    public static bool TryHttp(string request, ListenerConfig listener, RequestAttributes a, out string? error)
    {
        error = null;
        var parts = request.Trim().Split(' ', 2, StringSplitOptions.RemoveEmptyEntries);
        if (parts.Length != 2) { error = "an HTTP request is 'METHOD URL' (or 'CONNECT host:port')"; return false; }
        a.Method = parts[0].ToUpperInvariant();
        if (a.Method == "CONNECT")
        {
            // A bad authority is the gateway's 400 (see Refusal), not a usage error.
            if (RequestTarget.ParseAuthority(parts[1], out var host, out var port, out _) == TargetStatus.Ok)
            {
                a.Host = host;
                a.Port = port;
            }
            return true;
        }
        var target = new CanonicalTarget();
        var status = RequestTarget.Parse(parts[1], listener.AmbiguousPaths, target, out _);
        if (status != TargetStatus.Malformed && (target.Host is null || target.Scheme is not ("http" or "https")))
        {
            error = $"'{parts[1]}' is not an absolute http(s) URL";
            return false;
        }
        target.ApplyTo(a);
        return true;
    }

    /// <summary>Why the live gateway would answer 400 before asking the policy (malformed or ambiguous target), or null.</summary>
    public static string? Refusal(ListenerConfig listener, string request)
    {
        if (listener.Type is not (ListenerType.HttpProxy or ListenerType.HttpReverse)) return null;
        var parts = request.Trim().Split(' ', 2, StringSplitOptions.RemoveEmptyEntries);
        if (parts.Length != 2) return null;
        string? why;
        if (parts[0].Equals("CONNECT", StringComparison.OrdinalIgnoreCase))
            return RequestTarget.ParseAuthority(parts[1], out _, out _, out why) == TargetStatus.Ok ? null : $"400 malformed CONNECT target: {why}";
        return RequestTarget.Parse(parts[1], listener.AmbiguousPaths, new CanonicalTarget(), out why) switch
        {
            TargetStatus.Ambiguous => $"400 ambiguous request target: {why} (ambiguous_paths: refuse)",
            TargetStatus.Malformed => $"400 malformed request target: {why}",
            _ => null,
        };
    }
}
