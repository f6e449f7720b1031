//! Values sent to PostgreSQL: bound parameters and binary-COPY cells, each converting itself
//! to the type the server expects in that place.

use bytes::BytesMut;
use dynashift_core::cells::CellRef;
use dynashift_core::sql::Param;
use dynashift_core::value::hex_encode;
use tokio_postgres::types::{to_sql_checked, IsNull, ToSql, Type};

/// A bound parameter or staged cell: the statement decides the type, the value follows it.
pub struct Bound<'a>(pub Value<'a>);

#[derive(Debug, Clone, Copy)]
pub enum Value<'a> {
    Null,
    Text(&'a str),
    Int(i64),
    Bool(bool),
    Bytes(&'a [u8]),
}

impl std::fmt::Debug for Bound<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl<'a> From<&'a Param> for Bound<'a> {
    fn from(p: &'a Param) -> Bound<'a> {
        Bound(match p {
            Param::Null => Value::Null,
            Param::Text(s) => Value::Text(s),
            Param::Int(n) => Value::Int(*n),
            Param::Bytes(b) => Value::Bytes(b),
        })
    }
}

impl<'a> From<CellRef<'a>> for Bound<'a> {
    fn from(c: CellRef<'a>) -> Bound<'a> {
        Bound(match c {
            CellRef::Null => Value::Null,
            CellRef::Text(s) => Value::Text(s),
            CellRef::Int(n) => Value::Int(n),
            CellRef::Bytes(b) => Value::Bytes(b),
        })
    }
}

impl ToSql for Bound<'_> {
    fn to_sql(
        &self,
        ty: &Type,
        out: &mut BytesMut,
    ) -> Result<IsNull, Box<dyn std::error::Error + Sync + Send>> {
        match self.0 {
            Value::Null => Ok(IsNull::Yes),
            Value::Text(s) => s.to_sql(ty, out),
            Value::Int(n) => match *ty {
                Type::INT4 => i32::try_from(n)?.to_sql(ty, out),
                Type::INT2 => i16::try_from(n)?.to_sql(ty, out),
                Type::TEXT | Type::VARCHAR => n.to_string().as_str().to_sql(ty, out),
                _ => n.to_sql(ty, out),
            },
            Value::Bool(b) => b.to_sql(ty, out),
            // Binary staged in a text column (Redshift's stage layout) travels as hex.
            Value::Bytes(b) if matches!(*ty, Type::TEXT | Type::VARCHAR) => {
                hex_encode(b).as_str().to_sql(ty, out)
            }
            Value::Bytes(b) => b.to_sql(ty, out),
        }
    }

    // The SQL is built by the planner with the parameter types it binds; each value
    // converts itself to the type the server inferred.
    fn accepts(_: &Type) -> bool {
        true
    }

    to_sql_checked!();
}

pub fn stage_type(sql_type: &str) -> Type {
    match sql_type {
        "BIGINT" => Type::INT8,
        "BOOLEAN" => Type::BOOL,
        "BYTEA" => Type::BYTEA,
        _ => Type::TEXT,
    }
}
