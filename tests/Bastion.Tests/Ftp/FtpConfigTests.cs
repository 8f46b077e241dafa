using Bastion.Tests.Unit;

namespace Bastion.Tests.Ftp;

/// <summary>`check` on ftp listeners: built, its keys parsed, its mistakes pointed at FILE:LINE:COL.</summary>
public class FtpConfigTests
{
    const string Policy = "policies:\n  p:\n    rules:\n      - allow: {}\n";

    [Fact]
    public void An_ftp_listener_is_built_with_every_key()
    {
        var f = new ConfigFixture().File("c.crt", "x").File("c.key", "x").File("ca.pem", "x");
        var rt = f.BuildOk("""
            listeners:
              - name: files
                type: ftp
                listen: 127.0.0.1:0
                upstream: 127.0.0.1:21
                policy: p
                ftp:
                  passive_ports: 50000-50100
                  passive_address: 203.0.113.7
                  data_mode: keep
                  tls: { cert: c.crt, key: c.key }
                  client_tls: required
                  upstream_tls: opportunistic
                  upstream_ca: ca.pem
                  max_line: 1024
                  data_timeout: 5s
            """ + "\n" + Policy);
        var ftp = rt.Listener("files")!.Ftp!;
        Assert.Equal((50000, 50100), (ftp.PassiveLow, ftp.PassiveHigh));
        Assert.Equal("203.0.113.7", ftp.PassiveAddress);
        Assert.Equal("keep", ftp.DataMode);
        Assert.True(ftp.ClientTlsRequired);
        Assert.Equal("opportunistic", ftp.UpstreamTls);
        Assert.Equal(1024, ftp.MaxLine);
        Assert.Equal(TimeSpan.FromSeconds(5), ftp.DataTimeout);
        // No upstream: the client names the server at USER.
        new ConfigFixture().BuildOk("listeners:\n  - { name: f, type: ftp, listen: 127.0.0.1:0, policy: p }\n" + Policy);
    }

    [Fact]
    public void Mistakes_point_at_the_value()
    {
        var f = new ConfigFixture();
        var (_, errors) = f.Build("""
            listeners:
              - name: files
                type: ftp
                listen: 127.0.0.1:0
                upstream: not-a-target
                policy: p
                ftp:
                  passive_ports: 80-90
                  passive_address: "::1"
                  data_mode: sideways
                  client_tls: required
                  upstream_tls: maybe
                  max_line: 10
            """ + "\n" + Policy);
        ConfigFixture.HasError(errors, f.Path, 8, 22, "passive_ports: '80-90' is not a port or a range");
        ConfigFixture.HasError(errors, f.Path, 9, 24, "passive_address: '::1' is not an IPv4 address");
        ConfigFixture.HasError(errors, f.Path, 10, 18, "data_mode must be passive, active or keep, not 'sideways'");
        ConfigFixture.HasError(errors, f.Path, 11, 19, "client_tls: required needs ftp.tls");
        ConfigFixture.HasError(errors, f.Path, 12, 21, "upstream_tls must be required, opportunistic or off, not 'maybe'");
        ConfigFixture.HasError(errors, f.Path, 13, 17, "max_line");
    }

    [Fact]
    public void Cross_checks_point_at_the_value()
    {
        var f = new ConfigFixture().File("u.htpasswd", "");
        var (_, errors) = f.Build("""
            listeners:
              - name: files
                type: ftp
                listen: 127.0.0.1:0
                upstream: not-a-target
                authenticate: true
                policy: p
                ftp:
                  upstream_ca: missing.pem
              - name: web
                type: tcp
                listen: 127.0.0.1:0
                upstream: 127.0.0.1:1
                ftp: { data_mode: active }
            identity: { users: u.htpasswd }
            """ + "\n" + Policy);
        ConfigFixture.HasError(errors, f.Path, 5, 15, "upstream 'not-a-target' is neither host:port nor a group");
        ConfigFixture.HasError(errors, f.Path, 6, 19, "'authenticate' is not supported");
        ConfigFixture.HasError(errors, f.Path, 9, 20, "cannot read upstream_ca");
        ConfigFixture.HasError(errors, f.Path, 14, 10, "the 'ftp:' section is for ftp listeners");
    }
}
